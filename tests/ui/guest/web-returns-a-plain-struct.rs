//! A web function returning a type that is neither a response, text nor
//! `Serialize`: one error, at the return type, naming the function and
//! what it may return.

#[modal_guest::app]
mod shop {
    pub struct Basket {
        pub items: u32,
    }

    #[function(web(method = "GET"))]
    fn basket() -> Basket {
        Basket { items: 2 }
    }
}
