//! Keeping secrets out of logs and `Debug`: credentials in headers and URLs.

/// Headers whose values are credentials and are never logged or shown.
const SENSITIVE: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

/// A URL that may carry credentials (a proxy's `user:password@`): `Debug` shows it
/// redacted, and it derefs to the full URL for use.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretUrl(pub(crate) String);

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl std::ops::Deref for SecretUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Whether the value of header `name` must never be logged.
pub(crate) fn is_sensitive_header(name: &str) -> bool {
    SENSITIVE.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// The URL with its userinfo (`user:password@`) and query removed, for logs and errors:
/// presigned URLs carry their credentials in the query.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(i) => format!("***@{}", &authority[i + 1..]),
        None => authority.to_string(),
    };
    let path = match path.find(['?', '#']) {
        Some(i) => format!("{}?…", &path[..i]),
        None => path.to_string(),
    };
    format!("{scheme}{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_and_query() {
        assert_eq!(
            redact_url("https://bob:hunter2@example.com/a?sig=abc"),
            "https://***@example.com/a?…"
        );
        assert_eq!(redact_url("http://h:80/x"), "http://h:80/x");
        assert_eq!(redact_url("garbage"), "garbage");
        assert!(is_sensitive_header("AUTHORIZATION"));
        assert!(!is_sensitive_header("Content-Type"));
    }
}
