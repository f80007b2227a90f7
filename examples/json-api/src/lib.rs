//! The json-api app: web functions that return ordinary values. A
//! `Serialize` value is sent as JSON, a `Result` as its `Ok` (200) or its
//! error's text (500), a `String` as text, a `Response` as it is.
//!
//! `modal deploy json-api.wasm`, then
//! `curl http://json-api--items.localhost:8000/` answers
//! `[{"id":1,"name":"kettle"},{"id":2,"name":"teapot"}]` and
//! `curl 'http://json-api--item.localhost:8000/?id=9'` a 500 saying
//! `no item 9`.

#[modal_guest::app]
mod json_api {
    use modal_guest::{Request, Response};
    use serde::Serialize;

    /// One item of the catalogue.
    #[derive(Clone, Serialize)]
    pub struct Item {
        id: u32,
        name: String,
    }

    fn catalogue() -> Vec<Item> {
        [(1, "kettle"), (2, "teapot")]
            .into_iter()
            .map(|(id, name)| Item {
                id,
                name: name.to_string(),
            })
            .collect()
    }

    fn find(req: &Request) -> Result<Item, String> {
        let id: u32 = req
            .query("id")
            .and_then(|id| id.parse().ok())
            .ok_or("give ?id=N")?;
        catalogue()
            .into_iter()
            .find(|item| item.id == id)
            .ok_or_else(|| format!("no item {id}"))
    }

    /// Every item, as a JSON array.
    #[function(web(method = "GET"))]
    fn items() -> Vec<Item> {
        catalogue()
    }

    /// The first item, as a JSON object.
    #[function(web(method = "GET"))]
    fn first() -> Item {
        catalogue().remove(0)
    }

    /// The item `?id=N` as JSON, or a 500 saying why not.
    #[function(web(method = "GET"))]
    fn item(req: Request) -> Result<Item, String> {
        find(&req)
    }

    /// The item `?id=N` as a `201 Created` with a `location`, or a 500.
    #[function(web(method = "POST"))]
    fn create(req: Request) -> Result<Response, String> {
        let item = find(&req)?;
        Ok(Response::json(&item)
            .with_status(201)
            .with_header("location", &format!("/items/{}", item.id)))
    }

    /// `Response::json` of a `Result`: the item, or a 500 with the error
    /// as JSON.
    #[function(web(method = "GET"))]
    fn lookup(req: Request) -> Response {
        Response::json(&find(&req))
    }

    /// Text stays text.
    #[function(web(method = "GET"))]
    fn motto() -> String {
        "tea, earl grey, hot".to_string()
    }
}
