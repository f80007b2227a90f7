//! An async web function returning a `Result` whose `Ok` is neither a
//! response, text nor `Serialize`.

#[modal_guest::app]
mod shop {
    use modal_guest::Request;

    pub struct Basket {
        pub items: u32,
    }

    #[function(web)]
    async fn basket(req: Request) -> Result<Basket, String> {
        let items = req.query("items").ok_or("give ?items=N")?;
        Ok(Basket {
            items: items.parse().map_err(|_| "not a number")?,
        })
    }
}
