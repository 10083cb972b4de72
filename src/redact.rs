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
///
/// A URL that holds an `@` but does not parse cleanly is not shown at all: where its
/// userinfo ends cannot be known (a password may hold `/`, `?` or `#`), so any part of
/// it could be a secret. One without an `@` has no userinfo and keeps its shape (minus
/// the query), so that the error can still show what is wrong with it.
pub(crate) fn redact_url(url: &str) -> String {
    if url.contains('@') && !clear_userinfo(url) {
        return format!(
            "<a {}-byte URL that does not parse, not shown: it may hold credentials>",
            url.len()
        );
    }
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

/// Whether the userinfo of a URL that holds an `@` is where the URL says: it parses,
/// its port (if any) is a number, and no `@` stands after its authority (a password
/// with `/`, `?` or `#` in it would put one there).
fn clear_userinfo(url: &str) -> bool {
    let Ok(u) = url.parse::<ureq::http::Uri>() else {
        return false;
    };
    let Some(authority) = u.authority() else {
        return false;
    };
    let port_ok = authority.port().is_none() || authority.port_u16().is_some();
    let after = u.path_and_query().map_or("", |p| p.as_str());
    port_ok && !after.contains('@') && !url.contains('#')
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
        for bad in [
            "http://user:PW1/PW2@h/x",
            "http://user:PW1?PW2@h/x",
            "http://user:PW1#PW2@h/x",
            "http://u:PW1@[::1/x",
        ] {
            let r = redact_url(bad);
            assert!(!r.contains("PW"), "{bad} -> {r}");
        }
        assert!(is_sensitive_header("AUTHORIZATION"));
        assert!(!is_sensitive_header("Content-Type"));
    }
}
