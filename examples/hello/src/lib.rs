//! The hello app: a plain function and a web endpoint.
//!
//! Build it with `cargo build --release --target wasm32-wasip2` in
//! `examples/`, then run `modal run target/wasm32-wasip2/release/hello.wasm::square 7`
//! (prints `49`) or `modal run ...hello.wasm::greet '/?name=Ada'` (prints
//! `Hello, Ada!`).

#[modal_guest::app]
mod hello {
    use modal_guest::{Request, Response};

    use modal_guest::json::Number;

    /// Squares a number; integers stay integers.
    #[function]
    fn square(x: Number) -> Result<Number, String> {
        if let Some(square) = x.as_i64().and_then(|i| i.checked_mul(i)) {
            return Ok(square.into());
        }
        let x = x.as_f64().unwrap_or(f64::NAN);
        Number::from_f64(x * x).ok_or_else(|| format!("the square of {x} is not a finite number"))
    }

    /// Greets `?name=` (or the world).
    #[function(web(method = "GET"))]
    fn greet(req: Request) -> Response {
        let name = req.query("name").unwrap_or_else(|| "world".to_string());
        Response::text(format!("Hello, {name}!"))
    }
}
