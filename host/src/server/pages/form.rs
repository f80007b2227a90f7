//! What the pages read from a request (query strings, form bodies, path
//! segments) and how they write URLs.

use super::super::RequestBody;
use http_body_util::{BodyExt, Limited};
use hyper::Request;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Largest form accepted (login, confirmations): they hold a token or
/// two, so anything bigger is not one of ours.
const FORM_LIMIT: usize = 16 << 10;

/// What a URL component (a query value or a path segment) is
/// percent-encoded with: everything but RFC 3986's unreserved characters
/// (letters, digits, `-`, `.`, `_`, `~`). `/` is encoded too (`%2F`), so a
/// value never reads as more path segments; the control API and the CLI
/// follow the same rule. Query strings and form bodies are decoded as
/// `application/x-www-form-urlencoded` ([`pairs`]).
pub(super) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Decoded `key=value` pairs of a query string or form body.
pub(super) type Pairs = Vec<(String, String)>;

/// The `key=value` pairs of a query string or form body, in order and
/// decoded: `+` is a space, `%XX` a byte (`%2F` is `/`), an invalid escape
/// such as `%zz` stays as written, and bytes that are not UTF-8 become
/// U+FFFD.
pub(super) fn pairs(input: &[u8]) -> Pairs {
    form_urlencoded::parse(input).into_owned().collect()
}

/// The pairs of the request's query string.
pub(super) fn query<B>(req: &Request<B>) -> Pairs {
    pairs(req.uri().query().unwrap_or("").as_bytes())
}

/// The pairs of a form body; none if it is larger than [`FORM_LIMIT`] or
/// does not arrive.
pub(super) async fn form(req: Request<RequestBody>) -> Pairs {
    match Limited::new(req.into_body(), FORM_LIMIT).collect().await {
        Ok(body) => pairs(&body.to_bytes()),
        Err(_) => Vec::new(),
    }
}

/// The value of `name` (the first), or `""`.
pub(super) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The value of `name` unless it is missing or blank.
pub(super) fn given(pairs: &[(String, String)], name: &str) -> Option<String> {
    let value = field(pairs, name).trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// One path segment, percent-decoded (bytes that are not UTF-8 become
/// U+FFFD).
pub(super) fn segment(raw: &str) -> String {
    percent_decode_str(raw).decode_utf8_lossy().into_owned()
}

/// `value` encoded as one URL component.
pub(super) fn encode(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// `path` with the non-empty `params` as its query string.
pub(super) fn url(path: &str, params: &[(&str, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(k, v);
        any = true;
    }
    if any {
        format!("{path}?{}", query.finish())
    } else {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(input: &str) -> Vec<(String, String)> {
        pairs(input.as_bytes())
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn a_plus_is_a_space_and_an_escaped_plus_is_a_plus() {
        assert_eq!(decoded("q=a+b%2Bc"), [pair("q", "a b+c")]);
    }

    #[test]
    fn an_escaped_slash_is_a_slash() {
        assert_eq!(
            decoded("next=%2Fapps%2Fhello&x=/a/b"),
            [pair("next", "/apps/hello"), pair("x", "/a/b")]
        );
    }

    #[test]
    fn invalid_escapes_stay_as_written() {
        assert_eq!(
            decoded("a=%zz&b=100%&c=%4"),
            [pair("a", "%zz"), pair("b", "100%"), pair("c", "%4")]
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        assert_eq!(decoded("a=%FF%FEx"), [pair("a", "\u{fffd}\u{fffd}x")]);
        assert_eq!(pairs(b"a=\xffx"), [pair("a", "\u{fffd}x")]);
        assert_eq!(decoded("name=caf%C3%A9"), [pair("name", "café")]);
    }

    #[test]
    fn empty_pairs_are_skipped_and_a_bare_key_has_an_empty_value() {
        assert_eq!(decoded("&a&&b=&"), [pair("a", ""), pair("b", "")]);
        assert_eq!(decoded(""), []);
    }

    #[test]
    fn components_encode_everything_but_unreserved_characters() {
        let encoded = encode("/apps/my app?x=1&y=a+b~ü");
        assert_eq!(encoded, "%2Fapps%2Fmy%20app%3Fx%3D1%26y%3Da%2Bb~%C3%BC");
        assert_eq!(
            decoded(&format!("next={encoded}")),
            [pair("next", "/apps/my app?x=1&y=a+b~ü")]
        );
        assert_eq!(encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(segment(&encode("a/b c")), "a/b c");
    }

    #[test]
    fn urls_carry_only_the_values_given_and_round_trip() {
        assert_eq!(url("/apps/a/logs", &[("q", String::new())]), "/apps/a/logs");
        let link = url(
            "/apps/a/logs",
            &[("function", "sq".into()), ("q", "a&b=c %".into())],
        );
        assert_eq!(link, "/apps/a/logs?function=sq&q=a%26b%3Dc+%25");
        let (_, query) = link.split_once('?').unwrap();
        assert_eq!(
            decoded(query),
            [pair("function", "sq"), pair("q", "a&b=c %")]
        );
        assert_eq!(given(&decoded("a=+&b=x"), "a"), None);
        assert_eq!(given(&decoded("a=+&b=x"), "b").as_deref(), Some("x"));
    }
}
