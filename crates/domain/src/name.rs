//! DNS names and labels as the domain keeps them: lower-case ASCII text,
//! absolute names with their trailing dot.

use crate::error::ValidationError;

/// Longest label (RFC 1035 §2.3.4).
pub const LABEL_LEN_MAX: usize = 63;
/// Longest name in presentation form without the trailing dot; 253 characters
/// keep the wire form within 255 octets (RFC 1035 §2.3.4).
pub const NAME_LEN_MAX: usize = 253;

/// Validate and normalise an identifier that must be one DNS label in
/// host-name syntax (tenant ids, cluster ids, aliases, service names):
/// letters, digits and inner hyphens, 1 to 63 characters. Case-insensitive:
/// the result is lower case.
pub fn label(field: &str, text: &str) -> Result<String, ValidationError> {
    let lower = text.to_ascii_lowercase();
    check_host_label(&lower).map_err(|reason| ValidationError::new(field, reason))?;
    Ok(lower)
}

fn check_host_label(l: &str) -> Result<(), String> {
    if l.is_empty() {
        return Err("must not be empty".into());
    }
    if l.len() > LABEL_LEN_MAX {
        return Err(format!("{} characters, at most {LABEL_LEN_MAX} allowed in a DNS label", l.len()));
    }
    if let Some(c) = l.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
        return Err(format!("character {c:?} not allowed (letters, digits and '-' only)"));
    }
    if l.starts_with('-') || l.ends_with('-') {
        return Err("must not start or end with '-'".into());
    }
    Ok(())
}

/// Validate and normalise an absolute domain name (`ns1.example.test.`).
/// Labels may hold letters, digits, '-' and '_' (for `_acme-challenge`,
/// `_sip._tcp`); not `*`: Switchboard holds no wildcard records of its own.
/// The root name `.` is not accepted.
pub fn absolute(field: &str, text: &str) -> Result<String, ValidationError> {
    match flaw(text) {
        None => Ok(text.to_ascii_lowercase()),
        Some(reason) => Err(ValidationError::new(field, reason.to_string())),
    }
}

/// Whether `absolute` takes `text`, without allocating (the query path
/// asks it of every name a rule makes).
pub fn is_absolute(text: &str) -> bool {
    flaw(text).is_none()
}

/// Why `absolute` refuses a name.
enum Flaw<'a> {
    NotAbsolute(&'a str),
    Root,
    TooLong(usize),
    EmptyLabel(&'a str),
    LongLabel(&'a str),
    Character(&'a str, char),
}

impl std::fmt::Display for Flaw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flaw::NotAbsolute(text) => write!(f, "{text:?} must be absolute (end with '.')"),
            Flaw::Root => write!(f, "the root name is not allowed here"),
            Flaw::TooLong(len) => write!(f, "{len} characters, at most {NAME_LEN_MAX} allowed"),
            Flaw::EmptyLabel(text) => write!(f, "{text:?} has an empty label"),
            Flaw::LongLabel(l) => write!(f, "label {l:?} is longer than {LABEL_LEN_MAX} characters"),
            Flaw::Character(l, c) => write!(f, "label {l:?} has character {c:?} (letters, digits, '-' and '_' only)"),
        }
    }
}

fn flaw(text: &str) -> Option<Flaw<'_>> {
    let Some(body) = text.strip_suffix('.') else {
        return Some(Flaw::NotAbsolute(text));
    };
    if body.is_empty() {
        return Some(Flaw::Root);
    }
    if body.len() > NAME_LEN_MAX {
        return Some(Flaw::TooLong(body.len()));
    }
    for l in body.split('.') {
        if l.is_empty() {
            return Some(Flaw::EmptyLabel(text));
        }
        if l.len() > LABEL_LEN_MAX {
            return Some(Flaw::LongLabel(l));
        }
        if let Some(c) = l.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            return Some(Flaw::Character(l, c));
        }
    }
    None
}

/// Resolve a name as written in a zone: `@` is the apex, a name without a
/// trailing dot is relative to the apex. The result must lie within the zone.
pub fn in_zone(field: &str, text: &str, apex: &str) -> Result<String, ValidationError> {
    let full = if text == "@" {
        apex.to_string()
    } else if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.{apex}")
    };
    let name = absolute(field, &full)?;
    if !is_within(&name, apex) {
        return Err(ValidationError::new(field, format!("{name:?} is outside the zone {apex:?}")));
    }
    Ok(name)
}

/// Resolve a target name (CNAME, NS, MX, SRV): absolute as written, or relative to the apex.
pub fn target(field: &str, text: &str, apex: &str) -> Result<String, ValidationError> {
    if text == "@" {
        Ok(apex.to_string())
    } else if text.ends_with('.') {
        absolute(field, text)
    } else {
        absolute(field, &format!("{text}.{apex}"))
    }
}

/// `name` equals `apex` or lies below it. Both lower-case and absolute.
pub fn is_within(name: &str, apex: &str) -> bool {
    name == apex || (name.len() > apex.len() && name.ends_with(apex) && name.as_bytes()[name.len() - apex.len() - 1] == b'.')
}

/// The labels of `name` left of `apex`, leftmost first. `None` when `name` is
/// not within `apex`; empty for the apex itself.
pub fn relative_labels<'a>(name: &'a str, apex: &str) -> Option<Vec<&'a str>> {
    if name == apex {
        return Some(Vec::new());
    }
    if !is_within(name, apex) {
        return None;
    }
    let rel = &name[..name.len() - apex.len() - 1];
    Some(rel.split('.').collect())
}

/// The key under which a name sorts next to its descendants: labels reversed
/// and joined by '.', so every descendant of `x` has the key `key(x) + "." + …`.
pub fn tree_key(name: &str) -> String {
    let body = name.strip_suffix('.').unwrap_or(name);
    let mut key = String::with_capacity(body.len());
    for (i, label) in body.rsplit('.').enumerate() {
        if i > 0 {
            key.push('.');
        }
        key.push_str(label);
    }
    key
}

/// Call `f` with `tree_key(name)` followed by `suffix`: the key the query
/// path looks static records and challenges up by, many times a query, so
/// built on the stack (`TreeKey`) for any name a query can hold, and on
/// the heap only past that.
pub fn with_tree_key<R>(name: &str, suffix: &str, f: impl FnOnce(&str) -> R) -> R {
    match TreeKey::new(name, suffix) {
        Some(key) => f(key.as_str()),
        None => f(&format!("{}{suffix}", tree_key(name))),
    }
}

/// `tree_key` of a name (followed by `suffix`) held on the stack; `None`
/// for a key longer than any query's name can make.
struct TreeKey {
    bytes: [u8; TREE_KEY_MAX],
    len: usize,
}

const TREE_KEY_MAX: usize = 256;

impl TreeKey {
    fn new(name: &str, suffix: &str) -> Option<TreeKey> {
        let body = name.strip_suffix('.').unwrap_or(name);
        let mut key = TreeKey { bytes: [0; TREE_KEY_MAX], len: 0 };
        for (i, label) in body.rsplit('.').enumerate() {
            if i > 0 {
                key.push(b".")?;
            }
            key.push(label.as_bytes())?;
        }
        key.push(suffix.as_bytes())?;
        Some(key)
    }

    fn push(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len + bytes.len();
        self.bytes.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    fn as_str(&self) -> &str {
        // Whole labels of a `str` and ASCII dots: valid UTF-8 throughout.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// The wire form of an absolute name (lower-case as given, uncompressed):
/// each label behind its length, then the root.
pub fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// The parent of an absolute name, or `None` for a single-label name.
pub fn parent(name: &str) -> Option<&str> {
    let (_, rest) = name.split_once('.')?;
    if rest.is_empty() {
        None
    } else {
        Some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_lowercased_and_checked() {
        assert_eq!(label("id", "MT1").as_deref(), Ok("mt1"));
        assert!(label("id", "").is_err());
        assert!(label("id", "-a").is_err());
        assert!(label("id", "a_b").is_err());
        assert!(label("id", &"a".repeat(64)).is_err());
        assert_eq!(label("id", &"a".repeat(63)).map(|s| s.len()), Ok(63));
        let e = label("tenant.id", "a b").unwrap_err();
        assert_eq!(e.field, "tenant.id");
    }

    #[test]
    fn absolute_names() {
        assert_eq!(absolute("n", "Apps.Example.TEST.").as_deref(), Ok("apps.example.test."));
        assert!(absolute("n", "apps.example.test").is_err());
        assert!(absolute("n", "a..b.").is_err());
        assert!(absolute("n", ".").is_err());
        assert!(absolute("n", "_acme-challenge.x.test.").is_ok());
    }

    #[test]
    fn within_and_relative() {
        assert!(is_within("a.apps.test.", "apps.test."));
        assert!(is_within("apps.test.", "apps.test."));
        assert!(!is_within("xapps.test.", "apps.test."));
        assert_eq!(relative_labels("x.y.apps.test.", "apps.test."), Some(vec!["x", "y"]));
        assert_eq!(relative_labels("apps.test.", "apps.test."), Some(vec![]));
        assert_eq!(relative_labels("other.", "apps.test."), None);
        assert_eq!(in_zone("n", "www", "apps.test.").as_deref(), Ok("www.apps.test."));
        assert_eq!(in_zone("n", "@", "apps.test.").as_deref(), Ok("apps.test."));
        assert!(in_zone("n", "www.other.", "apps.test.").is_err());
    }

    #[test]
    fn tree_keys_group_descendants() {
        assert_eq!(tree_key("www.apps.test."), "test.apps.www");
        assert!(tree_key("a.b.apps.test.").starts_with(&format!("{}.", tree_key("b.apps.test."))));
    }

    #[test]
    fn a_tree_key_on_the_stack_is_the_tree_key() {
        for name in ["www.apps.test.", "test.", ".", "a.b.c.d.e.", "apps.test"] {
            assert_eq!(TreeKey::new(name, "").map(|k| k.as_str().to_string()), Some(tree_key(name)), "{name}");
            assert_eq!(TreeKey::new(name, ".").map(|k| k.as_str().to_string()), Some(format!("{}.", tree_key(name))), "{name}");
        }
        let longest = format!("{}.", vec!["a".repeat(63); 4].join("."));
        assert_eq!(TreeKey::new(&longest, ".").map(|k| k.as_str().len()), Some(256));
        assert!(TreeKey::new(&format!("b{longest}"), ".").is_none());
        // Past the stack's room, the same key from the heap.
        let longer = format!("b{longest}");
        assert_eq!(with_tree_key(&longer, ".", str::to_string), format!("{}.", tree_key(&longer)));
        assert_eq!(with_tree_key("www.apps.test.", "", str::to_string), "test.apps.www");
    }

    #[test]
    fn is_absolute_takes_what_absolute_takes() {
        for name in ["a.test.", "A_b.test.", "test", ".", "a..test.", "a b.test.", "*.test.", &format!("{}.test.", "a".repeat(64))] {
            assert_eq!(is_absolute(name), absolute("n", name).is_ok(), "{name}");
        }
    }
}
