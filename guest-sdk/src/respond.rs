//! What a web function's return value becomes: [`IntoResponse`] for
//! responses and text, JSON for any `Serialize` value, and the dispatch
//! the `#[app]` macro generates between them.
//!
//! Coherence forbids `impl<T: Serialize> IntoResponse for T` beside the
//! impls for `String` and `Result` (a `String` is `Serialize` too), so the
//! macro picks the conversion by the function's concrete return type,
//! with autoref specialization: it calls `respond` on `&&&&Returned<T>`,
//! and method lookup takes the first of these that applies:
//! 1. `T: IntoResponse` ([`ViaIntoResponse`], on `&&&Returned`): a
//!    `Response`, text, `()`, a `Result` of those, or the user's own type;
//! 2. `T` is `Result<V: Serialize, E: Display>` ([`ViaResult`], on
//!    `&&Returned`): `Ok` as JSON, `Err` as a 500 with its text;
//! 3. `T: Serialize` ([`ViaSerialize`], on `&Returned`): JSON;
//! 4. anything else: the inherent `Returned::respond`, whose bound
//!    ([`WebReturn`]) no type meets, so the build fails with one error
//!    naming the function and what it may return.

use crate::web::Response;
use serde::Serialize;
use serde::ser::{self, Impossible};
use std::cell::Cell;
use std::fmt::{self, Display};
use std::marker::PhantomData;

/// What a web function may return besides a `Serialize` value (which is
/// sent as JSON): implement it for your own types to answer with them.
///
/// A web function may return:
/// - a [`Response`], as it is;
/// - a `String` or `&'static str`: `200`, `text/plain`;
/// - `()`: `204 No Content`;
/// - any other `serde::Serialize` value (`Vec<Item>`, your struct):
///   `200`, `application/json`, as [`Response::json`] sends it;
/// - a `Result<T, E>` of one of these whose error is `Display`: `Ok` as
///   above, `Err` as a `500` whose body is the error's text;
/// - `impl IntoResponse`, or a type of yours that implements it (it wins
///   over `Serialize`).
pub trait IntoResponse {
    /// Converts the value into a response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(204)
    }
}

impl<R: IntoResponse, E: Display> IntoResponse for Result<R, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(r) => r.into_response(),
            Err(e) => error_response(&e),
        }
    }
}

/// The `500` a web function's `Err` becomes: the error's text.
fn error_response(e: &impl Display) -> Response {
    Response::text(e.to_string()).with_status(500)
}

impl Response {
    /// A `200` JSON response (`content-type: application/json`) of `value`.
    ///
    /// A `Result` is taken apart rather than encoded as serde encodes it
    /// (`{"Ok": …}`): `Response::json(&Ok(x))` is `Response::json(&x)`, and
    /// `Response::json(&Err(e))` is a `500` whose body is `e` as JSON. A
    /// value that cannot be encoded gives a `500` saying why.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        let (status, encoded) = match value.serialize(ResultProbe) {
            Ok(Variant::Ok(body)) => (200, Ok(body)),
            Ok(Variant::Err(body)) => (500, Ok(body)),
            Err(Probe::Failed(message)) => (500, Err(message)),
            Err(Probe::NotAResult) => (200, serde_json::to_vec(value).map_err(|e| e.to_string())),
        };
        match encoded {
            Ok(body) => Response::new(status)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(e) => {
                Response::text(format!("could not encode the response: {e}")).with_status(500)
            }
        }
    }
}

/// A top-level `Result`, its value already encoded as JSON.
enum Variant {
    Ok(Vec<u8>),
    Err(Vec<u8>),
}

/// Why [`ResultProbe`] gave up.
#[derive(Debug)]
enum Probe {
    /// The value is not a `Result` (the probe stops at its first call).
    NotAResult,
    /// The `Result`'s value could not be encoded.
    Failed(String),
}

impl Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::NotAResult => f.write_str("not a Result"),
            Probe::Failed(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Probe {}

impl ser::Error for Probe {
    fn custom<T: Display>(message: T) -> Self {
        Probe::Failed(message.to_string())
    }
}

/// A serializer that only recognises serde's encoding of `Result` (a
/// newtype variant `Ok` or `Err` of an enum named `Result`) and stops at
/// the first call of anything else.
struct ResultProbe;

/// The methods of [`ResultProbe`] for everything but a newtype variant:
/// each says "not a `Result`" at once.
macro_rules! not_a_result {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$ret, Probe> {
            Err(Probe::NotAResult)
        })*
    };
}

impl ser::Serializer for ResultProbe {
    type Ok = Variant;
    type Error = Probe;
    type SerializeSeq = Impossible<Variant, Probe>;
    type SerializeTuple = Impossible<Variant, Probe>;
    type SerializeTupleStruct = Impossible<Variant, Probe>;
    type SerializeTupleVariant = Impossible<Variant, Probe>;
    type SerializeMap = Impossible<Variant, Probe>;
    type SerializeStruct = Impossible<Variant, Probe>;
    type SerializeStructVariant = Impossible<Variant, Probe>;

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Variant, Probe> {
        if name != "Result" {
            return Err(Probe::NotAResult);
        }
        let body = serde_json::to_vec(value).map_err(|e| Probe::Failed(e.to_string()))?;
        match variant {
            "Ok" => Ok(Variant::Ok(body)),
            "Err" => Ok(Variant::Err(body)),
            _ => Err(Probe::NotAResult),
        }
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Variant, Probe> {
        Err(Probe::NotAResult)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<Variant, Probe> {
        Err(Probe::NotAResult)
    }

    not_a_result! {
        serialize_bool(bool) -> Variant;
        serialize_i8(i8) -> Variant;
        serialize_i16(i16) -> Variant;
        serialize_i32(i32) -> Variant;
        serialize_i64(i64) -> Variant;
        serialize_i128(i128) -> Variant;
        serialize_u8(u8) -> Variant;
        serialize_u16(u16) -> Variant;
        serialize_u32(u32) -> Variant;
        serialize_u64(u64) -> Variant;
        serialize_u128(u128) -> Variant;
        serialize_f32(f32) -> Variant;
        serialize_f64(f64) -> Variant;
        serialize_char(char) -> Variant;
        serialize_str(&str) -> Variant;
        serialize_bytes(&[u8]) -> Variant;
        serialize_none() -> Variant;
        serialize_unit() -> Variant;
        serialize_unit_struct(&'static str) -> Variant;
        serialize_unit_variant(&'static str, u32, &'static str) -> Variant;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

/// A web function's return value on its way to a response, `F` naming the
/// function in the compile error of a type that is none of the above.
/// Not part of the public API.
#[doc(hidden)]
pub struct Returned<T, F> {
    value: Cell<Option<T>>,
    function: PhantomData<F>,
}

impl<T, F> Returned<T, F> {
    /// Wraps what the function returned.
    pub fn new(value: T) -> Self {
        Returned {
            value: Cell::new(Some(value)),
            function: PhantomData,
        }
    }

    /// The value (once: `respond` is called once per `Returned`).
    fn take(&self) -> T {
        match self.value.take() {
            Some(value) => value,
            None => unreachable!("a returned value is turned into a response once"),
        }
    }

    /// The last resort of the dispatch, reached only by a type that is
    /// none of the above: its bound fails the build with one message.
    pub fn respond(&self) -> Response
    where
        T: WebReturn<F>,
    {
        unreachable!("no type implements WebReturn")
    }
}

/// First choice: the value is [`IntoResponse`]. Not part of the public API.
#[doc(hidden)]
pub trait ViaIntoResponse {
    /// Converts the value.
    fn respond(&self) -> Response;
}

impl<T: IntoResponse, F> ViaIntoResponse for &&&Returned<T, F> {
    fn respond(&self) -> Response {
        self.take().into_response()
    }
}

/// Second choice: a `Result` of a `Serialize` value and a `Display` error.
/// Not part of the public API.
#[doc(hidden)]
pub trait ViaResult {
    /// Converts the value.
    fn respond(&self) -> Response;
}

impl<T: Serialize, E: Display, F> ViaResult for &&Returned<Result<T, E>, F> {
    fn respond(&self) -> Response {
        match self.take() {
            Ok(value) => Response::json(&value),
            Err(e) => error_response(&e),
        }
    }
}

/// Third choice: any `Serialize` value, as JSON. Not part of the public
/// API.
#[doc(hidden)]
pub trait ViaSerialize {
    /// Converts the value.
    fn respond(&self) -> Response;
}

impl<T: Serialize, F> ViaSerialize for &Returned<T, F> {
    fn respond(&self) -> Response {
        Response::json(&self.take())
    }
}

/// The bound no type meets: what a web function returning something else
/// is told. `F` is a type named after the function.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "web function `{F}` cannot return `{Self}`",
    label = "not a response, text or `Serialize` value",
    note = "a web function may return a `modal_guest::Response`, a `String` or `&'static str` (text), `()` (204), \
            any `serde::Serialize` value (sent as JSON), a `Result` of one of these whose error is `Display` \
            (an `Err` is a 500 with its text), or a type that implements `modal_guest::IntoResponse`"
)]
pub trait WebReturn<F> {}

/// A type that cannot exist, so that [`WebReturn`] has an implementation
/// and the compiler does not suggest adding one (never constructed: only
/// its impl matters).
#[allow(dead_code)]
enum NoReturn {}

#[diagnostic::do_not_recommend]
impl<F> WebReturn<F> for NoReturn {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Item {
        id: u32,
    }

    struct Greet;

    /// What the macro generates for a web function returning `$value`.
    macro_rules! respond {
        ($value:expr) => {{
            #[allow(unused_imports)]
            use super::{ViaIntoResponse as _, ViaResult as _, ViaSerialize as _};
            (&&&&Returned::<_, Greet>::new($value)).respond()
        }};
    }

    fn body(r: &Response) -> &str {
        std::str::from_utf8(&r.body).unwrap()
    }

    #[test]
    fn each_kind_of_value_becomes_its_response() {
        let text = respond!(String::from("hi"));
        assert_eq!((text.status, body(&text)), (200, "hi"));
        assert_eq!(
            text.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        let list = respond!(vec![Item { id: 1 }, Item { id: 2 }]);
        assert_eq!((list.status, body(&list)), (200, r#"[{"id":1},{"id":2}]"#));
        assert_eq!(list.header("content-type"), Some("application/json"));
        let one = respond!(Item { id: 7 });
        assert_eq!(body(&one), r#"{"id":7}"#);
        let ok = respond!(Ok::<Item, String>(Item { id: 3 }));
        assert_eq!((ok.status, body(&ok)), (200, r#"{"id":3}"#));
        let err = respond!(Err::<Item, String>("no item 9".into()));
        assert_eq!((err.status, body(&err)), (500, "no item 9"));
        assert_eq!(
            err.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        let ok_text = respond!(Ok::<String, String>("plain".into()));
        assert_eq!((ok_text.status, body(&ok_text)), (200, "plain"));
        assert_eq!(
            ok_text.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        let made = respond!(Ok::<Response, String>(Response::new(201)));
        assert_eq!(made.status, 201);
        assert_eq!(respond!(()).status, 204);
        let none = respond!(None::<u32>);
        assert_eq!((none.status, body(&none)), (200, "null"));
    }

    #[test]
    fn json_takes_a_result_apart() {
        let ok: Result<Vec<u32>, String> = Ok(vec![1, 2]);
        let r = Response::json(&ok);
        assert_eq!((r.status, body(&r)), (200, "[1,2]"));
        let err: Result<Vec<u32>, String> = Err("broken".into());
        let r = Response::json(&err);
        assert_eq!((r.status, body(&r)), (500, "\"broken\""));
        assert_eq!(r.header("content-type"), Some("application/json"));
        // Only a Result at the top: inside a value it is serde's encoding.
        let r = Response::json(&[Ok::<u8, u8>(1)]);
        assert_eq!(body(&r), r#"[{"Ok":1}]"#);
        // Anything else is encoded as serde_json encodes it.
        let r = Response::json(&serde_json::json!({"Ok": 1}));
        assert_eq!(body(&r), r#"{"Ok":1}"#);
        let r = Response::json("text");
        assert_eq!(body(&r), "\"text\"");
    }

    #[test]
    fn a_value_that_cannot_be_encoded_is_a_500() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1);
        let r = Response::json(&map);
        assert_eq!(r.status, 500);
        assert!(
            body(&r).starts_with("could not encode the response: "),
            "{}",
            body(&r)
        );
        let r = Response::json(&Ok::<_, ()>(map));
        assert_eq!(r.status, 500);
    }

    #[test]
    fn results_become_responses() {
        let r: Result<&'static str, String> = Err("nope".into());
        assert_eq!(r.into_response().status, 500);
        assert_eq!(().into_response().status, 204);
    }
}
