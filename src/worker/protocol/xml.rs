//! The few elements the storage APIs' XML answers are read for, by name.
//!
//! Their answers are small, flat documents, and servers disagree on root elements and
//! namespaces (moto answers ListParts with `ListPartsResponse`, s3rver leaves out the
//! namespace, Azurite writes `standalone="yes"`), which strict parsers refuse; the
//! elements a protocol needs are read by name instead.

/// The text of the first `<name>…</name>` element, unescaped.
pub(crate) fn tag(xml: &str, name: &str) -> Option<String> {
    elements(xml, name).next().map(unescape)
}

/// The raw contents of every `<name>…</name>` element, in order (not nested).
pub(crate) fn elements<'x>(xml: &'x str, name: &str) -> impl Iterator<Item = &'x str> + 'x {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let end = rest[start..].find(&close)? + start;
        let inner = &rest[start..end];
        rest = &rest[end + close.len()..];
        Some(inner)
    })
}

/// XML's five predefined entities, decoded.
pub(crate) fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_read_by_name_whatever_the_root() {
        let xml = "<?xml version=\"1.0\" standalone=\"yes\"?><BlockList><UncommittedBlocks>\
                   <Block><Name>QQ==</Name><Size>5</Size></Block>\
                   <Block><Name>Qg==</Name><Size>7</Size></Block></UncommittedBlocks></BlockList>";
        let blocks: Vec<_> = elements(xml, "Block").collect();
        assert_eq!(blocks.len(), 2);
        assert_eq!(tag(blocks[1], "Size").as_deref(), Some("7"));
        assert_eq!(tag("<M>a &amp;lt; b</M>", "M").as_deref(), Some("a &lt; b"));
        assert_eq!(tag("<M>x", "M"), None);
    }
}
