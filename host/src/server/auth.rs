//! The control API token: created on first start, kept with 0600
//! permissions in the state directory, checked on every control request.

use super::{Body, json};
use crate::api::{ApiError, ErrorBody};
use hyper::{Request, Response, StatusCode};
use std::io::Write;
use std::path::Path;
use subtle::ConstantTimeEq;

/// The token's file name in the state directory.
pub const TOKEN_FILE: &str = "token";

/// Reads the token in `state_dir`, creating a random one (readable by the
/// owner only) if there is none.
pub fn load_or_create_token(state_dir: &Path) -> std::io::Result<String> {
    let path = state_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = new_token()?;
    crate::platform::state::private_dir(state_dir)?;
    let mut file = crate::platform::state::private_file(&path)?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(token)
}

/// A new random control token (64 hex digits).
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("no randomness for the token: {e}")))?;
    Ok(hex::encode(bytes))
}

/// The 401 answer to a request without `Authorization: Bearer TOKEN`, or
/// `None` when the token is right.
pub(crate) fn reject<B>(req: &Request<B>, token: &str) -> Option<Response<Body>> {
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if token_matches(given, token) => None,
        Some(_) => Some(unauthorized("the token is wrong")),
        None => Some(unauthorized(
            "a token is required (Authorization: Bearer TOKEN)",
        )),
    }
}

fn unauthorized(message: &str) -> Response<Body> {
    let body = ErrorBody::from(ApiError::new("unauthorized", message));
    let mut response = json(StatusCode::UNAUTHORIZED, &body);
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Whether `given` is the token, compared in constant time (`subtle`) so
/// that timing does not reveal how much of it was right. Only the length
/// may leak, and every token this host creates has the same length.
pub(crate) fn token_matches(given: &str, token: &str) -> bool {
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_token_is_created_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let token = load_or_create_token(dir.path()).unwrap();
        assert_eq!(token.len(), 64);
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_token(dir.path()).unwrap(), token);
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let req = |h: Option<&str>| {
            let mut b = Request::builder();
            if let Some(h) = h {
                b = b.header("authorization", h);
            }
            b.body(()).unwrap()
        };
        assert!(reject(&req(Some("Bearer abc")), "abc").is_none());
        assert_eq!(
            reject(&req(Some("Bearer abd")), "abc").unwrap().status(),
            401
        );
        assert_eq!(reject(&req(Some("abc")), "abc").unwrap().status(), 401);
        assert_eq!(reject(&req(None), "abc").unwrap().status(), 401);
    }

    #[test]
    fn tokens_match_only_whole() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("abcd", "abc"));
        assert!(!token_matches("", "abc"));
    }
}
