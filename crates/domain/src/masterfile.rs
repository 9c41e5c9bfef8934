//! RFC 1035 master (zone) files: a reader for the records Switchboard serves
//! and a writer whose output Knot DNS and NSD load unchanged.
//!
//! The reader follows RFC 1035 §5.1 and common practice: `;` comments,
//! `$ORIGIN` and `$TTL`, `@`, relative names, a blank owner for "same owner
//! as before", TTL and class in either order, TTL units (`1h30m`),
//! parentheses spanning lines, and quoted strings with `\"`, `\\` and `\DDD`
//! escapes. Record data is checked by the same rules as records written
//! through the API ([`RData::parse`]).
//!
//! Pure text in, text out: no file access (`$INCLUDE` is refused).

use crate::name;
use crate::record::{RData, RType, Record, TTL_MAX, TXT_STRINGS_MAX};

/// One error, with the 1-based line where the record (or directive) starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct MasterFileError {
    pub line: usize,
    pub reason: String,
}

/// Parse a master file. `origin` is the initial $ORIGIN (absolute, e.g.
/// "apps.example.test."), may be None if the file sets $ORIGIN before any
/// relative name. Returns records with absolute lower-case owner names, in
/// file order.
///
/// A record without a TTL takes the last `$TTL`, else the previous record's
/// TTL; with neither it is an error. An invalid `origin` argument is reported
/// as line 0. The first error ends the parse.
pub fn parse(text: &str, origin: Option<&str>) -> Result<Vec<Record>, MasterFileError> {
    let origin = match origin {
        Some(o) => Some(name::absolute("origin", o).map_err(|e| MasterFileError { line: 0, reason: format!("origin: {}", e.reason) })?),
        None => None,
    };
    let mut parser = Parser { origin, default_ttl: None, last_owner: None, last_ttl: None };
    let mut lexer = Lexer { text, pos: 0, line: 1 };
    let mut records = Vec::new();
    while let Some(entry) = lexer.next_entry()? {
        if let Some(record) = parser.entry(&entry).map_err(|reason| MasterFileError { line: entry.line, reason })? {
            records.push(record);
        }
    }
    Ok(records)
}

/// Write records as a master file: a `$ORIGIN origin` line, then one record per line,
/// every name absolute (fully qualified), class IN, explicit TTL, types A AAAA CNAME NS MX TXT SRV CAA SOA.
/// The output must be loadable unchanged by Knot DNS (kzonecheck) and NSD.
///
/// `origin` must be absolute and the records valid (as [`parse`] or
/// [`RData::parse`] produce them); then `parse(&write(origin, records), None)`
/// gives back `records`.
pub fn write(origin: &str, records: &[Record]) -> String {
    let mut out = header(origin);
    for r in records {
        write_record(&mut out, r);
    }
    out
}

/// The first line of a file [`write`] produces; [`write_record`] adds the
/// rest, for writers that stream.
pub fn header(origin: &str) -> String {
    format!("$ORIGIN {origin}\n")
}

/// Append one record as a line: absolute owner, TTL, class IN, type, data.
pub fn write_record(out: &mut String, r: &Record) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "{} {} IN {} {}", r.name, r.ttl, r.rtype(), rdata_text(&r.data));
}

/// The data part of a record in master-file form, names absolute. Also
/// what the API takes as a static record's `data`.
pub fn rdata_text(data: &RData) -> String {
    match data {
        RData::A(a) => a.to_string(),
        RData::Aaaa(a) => a.to_string(),
        RData::Cname(n) | RData::Ns(n) | RData::Ptr(n) => n.clone(),
        RData::Mx { preference, exchange } => format!("{preference} {exchange}"),
        RData::Txt(strings) => strings.iter().map(|s| quote(s)).collect::<Vec<_>>().join(" "),
        RData::Srv { priority, weight, port, target } => format!("{priority} {weight} {port} {target}"),
        RData::Caa { flags, tag, value } => format!("{flags} {tag} {}", quote(value)),
        RData::Soa { mname, rname, serial, refresh, retry, expire, minimum } => {
            format!("{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}")
        }
        RData::Key { flags, algorithm, public_key, .. } => {
            use base64::Engine as _;
            format!("{flags} 3 {algorithm} {}", base64::engine::general_purpose::STANDARD.encode(public_key))
        }
        RData::Cds { key_tag, algorithm, digest_type, digest } => {
            let hex: String = digest.iter().map(|b| format!("{b:02X}")).collect();
            format!("{key_tag} {algorithm} {digest_type} {hex}")
        }
    }
}

/// A character-string in double quotes: `"` and `\` escaped with `\`, bytes
/// outside printable ASCII as `\DDD`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------
// Lexer: text → entries (one record or directive each, parentheses joined).

/// One word of an entry, as written (escapes not yet decoded). A quoted
/// word holds the text between the quotes.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    raw: &'a str,
    quoted: bool,
}

/// One record or directive: its words and where it starts.
#[derive(Debug)]
struct Entry<'a> {
    /// 1-based line of the first word.
    line: usize,
    /// The line starts with whitespace: the owner is the previous record's.
    blank_owner: bool,
    tokens: Vec<Token<'a>>,
}

/// Splits the text into entries. Every byte is looked at a bounded number
/// of times, so the work is linear in the input.
struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Lexer<'a> {
    /// The next non-empty entry, or `None` at the end of the text.
    fn next_entry(&mut self) -> Result<Option<Entry<'a>>, MasterFileError> {
        let bytes = self.text.as_bytes();
        let mut entry: Option<Entry<'a>> = None;
        let mut in_parens = false;
        while let Some(&c) = bytes.get(self.pos) {
            match c {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    if !in_parens && entry.is_some() {
                        break;
                    }
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b';' => {
                    while bytes.get(self.pos).is_some_and(|&b| b != b'\n') {
                        self.pos += 1;
                    }
                }
                b'(' => {
                    if in_parens {
                        return Err(self.error(&entry, "nested '(' is not allowed"));
                    }
                    self.start(&mut entry);
                    in_parens = true;
                    self.pos += 1;
                }
                b')' => {
                    if !in_parens {
                        return Err(self.error(&entry, "')' without '('"));
                    }
                    in_parens = false;
                    self.pos += 1;
                }
                b'"' => {
                    let start = self.pos + 1;
                    let mut end = start;
                    loop {
                        match bytes.get(end) {
                            Some(b'"') => break,
                            Some(b'\\') if !matches!(bytes.get(end + 1), None | Some(b'\n')) => end += 2,
                            None | Some(b'\n') => return Err(self.error(&entry, "a quoted string is not closed on its line")),
                            Some(_) => end += 1,
                        }
                    }
                    self.push(&mut entry, start, end, true)?;
                    self.pos = end + 1;
                }
                _ => {
                    let start = self.pos;
                    let mut end = start;
                    while let Some(&b) = bytes.get(end) {
                        match b {
                            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                            b'\\' if !matches!(bytes.get(end + 1), None | Some(b'\n')) => end += 2,
                            _ => end += 1,
                        }
                    }
                    self.push(&mut entry, start, end, false)?;
                    self.pos = end;
                }
            }
        }
        if in_parens {
            return Err(self.error(&entry, "'(' is never closed"));
        }
        Ok(entry)
    }

    /// Begin an entry at the current position unless one is under way.
    fn start(&self, entry: &mut Option<Entry<'a>>) {
        if entry.is_none() {
            // Entries begin with the first word of a line, so anything but a
            // newline (or nothing) before it is leading whitespace.
            let before = self.pos.checked_sub(1).and_then(|p| self.text.as_bytes().get(p));
            *entry = Some(Entry { line: self.line, blank_owner: !matches!(before, None | Some(b'\n')), tokens: Vec::new() });
        }
    }

    fn push(&self, entry: &mut Option<Entry<'a>>, start: usize, end: usize, quoted: bool) -> Result<(), MasterFileError> {
        self.start(entry);
        // Words start and end at ASCII delimiters, so this slice is always on
        // character boundaries; `get` keeps it panic-free regardless.
        let raw = self.text.get(start..end).ok_or_else(|| self.error(entry, "malformed text"))?;
        if let Some(e) = entry.as_mut() {
            e.tokens.push(Token { raw, quoted });
        }
        Ok(())
    }

    fn error(&self, entry: &Option<Entry<'a>>, reason: &str) -> MasterFileError {
        MasterFileError { line: entry.as_ref().map_or(self.line, |e| e.line), reason: reason.into() }
    }
}

// ---------------------------------------------------------------------------
// Parser: entries → records.

struct Parser {
    origin: Option<String>,
    default_ttl: Option<u32>,
    last_owner: Option<String>,
    last_ttl: Option<u32>,
}

impl Parser {
    /// Handle one entry: a directive (no record) or a record.
    fn entry(&mut self, entry: &Entry<'_>) -> Result<Option<Record>, String> {
        let Some(first) = entry.tokens.first() else {
            return Ok(None);
        };
        if !entry.blank_owner && !first.quoted && first.raw.starts_with('$') {
            self.directive(first.raw, &entry.tokens[1..])?;
            return Ok(None);
        }
        let (owner, rest) = if entry.blank_owner {
            let owner =
                self.last_owner.clone().ok_or("the line starts with whitespace (same owner as before) but no record precedes it")?;
            (owner, &entry.tokens[..])
        } else {
            let owner = self.owner(bare(first, "owner name")?).map_err(|r| format!("owner name: {r}"))?;
            (owner, &entry.tokens[1..])
        };

        // TTL and class, in either order, each at most once.
        let mut ttl = None;
        let mut class_seen = false;
        let mut i = 0;
        while let Some(t) = rest.get(i).filter(|t| !t.quoted) {
            if let Some(class) = class_name(t.raw) {
                if class_seen {
                    return Err("the class is given twice".into());
                }
                if class != "IN" {
                    return Err(format!("class {class} is not supported (only IN)"));
                }
                class_seen = true;
            } else if t.raw.starts_with(|c: char| c.is_ascii_digit()) {
                if ttl.is_some() {
                    return Err("the TTL is given twice".into());
                }
                ttl = Some(parse_ttl(t.raw)?);
            } else {
                break;
            }
            i += 1;
        }

        let rtype = match rest.get(i) {
            Some(t) => parse_type(bare(t, "record type")?)?,
            None => return Err("missing record type".into()),
        };
        let ttl = ttl.or(self.default_ttl).or(self.last_ttl).ok_or("no TTL: give the record a TTL or set $TTL before it")?;
        let data = self.rdata(rtype, &rest[i + 1..])?;
        self.last_owner = Some(owner.clone());
        self.last_ttl = Some(ttl);
        Ok(Some(Record { name: owner, ttl, data }))
    }

    fn directive(&mut self, directive: &str, args: &[Token<'_>]) -> Result<(), String> {
        let one_arg = || match args {
            [arg] => bare(arg, directive),
            _ => Err(format!("{directive} needs 1 value, got {}", args.len())),
        };
        if directive.eq_ignore_ascii_case("$ORIGIN") {
            // A relative $ORIGIN is relative to the current one.
            self.origin = Some(self.name(one_arg()?).map_err(|r| format!("$ORIGIN: {r}"))?);
        } else if directive.eq_ignore_ascii_case("$TTL") {
            self.default_ttl = Some(parse_ttl(one_arg()?).map_err(|r| format!("$TTL: {r}"))?);
        } else if directive.eq_ignore_ascii_case("$INCLUDE") {
            return Err("$INCLUDE is not supported".into());
        } else {
            return Err(format!("unknown directive {directive:?} (only $ORIGIN and $TTL)"));
        }
        Ok(())
    }

    /// An owner name: a name as [`Parser::name`] takes it, or a wildcard
    /// (`*` as the whole leftmost label, RFC 4592), such as the `*.{tenant}`
    /// owners a zone export holds.
    fn owner(&self, text: &str) -> Result<String, String> {
        let Some(rest) = text.strip_prefix('*') else {
            return self.name(text);
        };
        // `x` stands in for `*`, which name validation does not take: same length.
        let stand_in = match rest {
            "" => "x".to_string(),
            _ => format!("x.{}", rest.strip_prefix('.').ok_or_else(|| format!("{text:?}: '*' must be a whole label"))?),
        };
        let name = self.name(&stand_in)?;
        Ok(format!("*{}", name.get(1..).unwrap_or_default()))
    }

    /// A name as written: absolute, `@`, or relative to the current origin.
    fn name(&self, text: &str) -> Result<String, String> {
        if text.ends_with('.') {
            return name::absolute("name", text).map_err(|e| e.reason);
        }
        let Some(origin) = &self.origin else {
            return Err(format!("relative name {text:?} but no $ORIGIN is set"));
        };
        if text == "@" {
            Ok(origin.clone())
        } else {
            name::absolute("name", &format!("{text}.{origin}")).map_err(|e| e.reason)
        }
    }

    fn rdata(&self, rtype: RType, data: &[Token<'_>]) -> Result<RData, String> {
        match rtype {
            RType::Txt => {
                // Decode escapes here and hand RData::parse plain quoted strings
                // (it knows only `\"` and `\\`), so its rules on length and count apply.
                // Too many strings fails early, before any is decoded.
                if data.len() > TXT_STRINGS_MAX {
                    return Err(format!("{} strings, at most {TXT_STRINGS_MAX}", data.len()));
                }
                let strings = data.iter().map(|t| decode(t.raw).map(|s| requote(&s))).collect::<Result<Vec<_>, _>>()?;
                parse_data(rtype, &strings.join(" "), ".")
            }
            RType::Caa => {
                let [flags, tag, value] = data else {
                    return Err(format!("CAA data needs 3 field(s) (flags tag value), got {}", data.len()));
                };
                let (flags, tag) = (plain(flags, rtype)?, plain(tag, rtype)?);
                parse_data(rtype, &format!("{flags} {tag} {}", requote(&decode(value.raw)?)), ".")
            }
            RType::Soa => self.soa(data),
            _ => {
                let words = data.iter().map(|t| plain(t, rtype)).collect::<Result<Vec<_>, _>>()?;
                let name_at = match rtype {
                    RType::Cname | RType::Ns => Some(0),
                    RType::Mx => Some(1),
                    RType::Srv => Some(3),
                    _ => None,
                };
                let origin = match &self.origin {
                    Some(o) => o.as_str(),
                    None => {
                        if let Some(w) = name_at.and_then(|i| words.get(i)).filter(|w| !w.ends_with('.')) {
                            return Err(format!("relative name {w:?} but no $ORIGIN is set"));
                        }
                        // Every name is absolute: the apex is never used.
                        "."
                    }
                };
                parse_data(rtype, &words.join(" "), origin)
            }
        }
    }

    fn soa<'a>(&self, data: &[Token<'a>]) -> Result<RData, String> {
        let [mname, rname, serial, refresh, retry, expire, minimum] = data else {
            return Err(format!("SOA data needs 7 field(s) (mname rname serial refresh retry expire minimum), got {}", data.len()));
        };
        let field = |t: &Token<'a>| plain(t, RType::Soa);
        let time = |t: &Token<'a>, what: &str| parse_ttl(field(t)?).map_err(|r| format!("SOA {what}: {r}"));
        let serial = field(serial)?;
        Ok(RData::Soa {
            mname: self.name(field(mname)?).map_err(|r| format!("SOA mname: {r}"))?,
            rname: self.name(field(rname)?).map_err(|r| format!("SOA rname: {r}"))?,
            serial: serial.parse().map_err(|_| format!("SOA serial {serial:?} is not a number from 0 to 4294967295"))?,
            refresh: time(refresh, "refresh")?,
            retry: time(retry, "retry")?,
            expire: time(expire, "expire")?,
            minimum: time(minimum, "minimum")?,
        })
    }
}

fn parse_data(rtype: RType, text: &str, apex: &str) -> Result<RData, String> {
    RData::parse("data", rtype, text, apex).map_err(|e| e.reason)
}

/// A word that must not be a quoted string.
fn bare<'a>(t: &Token<'a>, what: &str) -> Result<&'a str, String> {
    if t.quoted {
        return Err(format!("{what} must not be a quoted string: \"{}\"", t.raw));
    }
    Ok(t.raw)
}

/// A data word that is neither quoted nor escaped (numbers, addresses, names).
fn plain<'a>(t: &Token<'a>, rtype: RType) -> Result<&'a str, String> {
    let raw = bare(t, &format!("{rtype} data"))?;
    if raw.contains('\\') {
        return Err(format!("escapes are not supported in {rtype} data: {raw:?}"));
    }
    Ok(raw)
}

/// The class a word names, upper-case, if it is one.
fn class_name(word: &str) -> Option<&'static str> {
    ["IN", "CH", "CHAOS", "HS", "HESIOD", "CS"].into_iter().find(|c| c.eq_ignore_ascii_case(word))
}

fn parse_type(word: &str) -> Result<RType, String> {
    Ok(match word.to_ascii_uppercase().as_str() {
        "A" => RType::A,
        "AAAA" => RType::Aaaa,
        "CNAME" => RType::Cname,
        "NS" => RType::Ns,
        "MX" => RType::Mx,
        "TXT" => RType::Txt,
        "SRV" => RType::Srv,
        "CAA" => RType::Caa,
        "SOA" => RType::Soa,
        _ => return Err(format!("record type {word:?} is not supported (A, AAAA, CNAME, NS, MX, TXT, SRV, CAA, SOA)")),
    })
}

/// A TTL or SOA time: seconds (`3600`) or a duration with units s, m, h, d,
/// w (`1h30m`, case-insensitive), at most [`TTL_MAX`].
fn parse_ttl(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a TTL (seconds, or a duration such as 1h30m)");
    let too_big = || format!("{text:?} exceeds the largest TTL {TTL_MAX}");
    let max = u64::from(TTL_MAX);
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    let mut has_unit = false;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            // Kept at most TTL_MAX, so neither this nor the unit product overflows.
            let n = number.unwrap_or(0) * 10 + u64::from(d);
            if n > max {
                return Err(too_big());
            }
            number = Some(n);
        } else {
            let unit = match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return Err(bad()),
            };
            total += number.take().ok_or_else(bad)? * unit;
            if total > max {
                return Err(too_big());
            }
            has_unit = true;
        }
    }
    match (number, has_unit) {
        (Some(n), false) => total = n,
        (None, true) => {}
        // Empty, or digits left over after a unit (`1h30`).
        _ => return Err(bad()),
    }
    u32::try_from(total).map_err(|_| too_big())
}

/// Decode a character-string as written (quotes already removed): `\DDD` is
/// a byte in decimal, `\X` is X. The result must be ASCII, as RData requires.
fn decode(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        let b = if b == b'\\' {
            match bytes.next() {
                None => return Err(format!("dangling '\\' in {raw:?}")),
                Some(d) if d.is_ascii_digit() => {
                    let digits = [Some(d), bytes.next(), bytes.next()];
                    let mut value: u32 = 0;
                    for digit in digits {
                        match digit {
                            Some(x) if x.is_ascii_digit() => value = value * 10 + u32::from(x - b'0'),
                            _ => return Err(format!("an escape '\\' followed by a digit needs three digits (\\DDD) in {raw:?}")),
                        }
                    }
                    u8::try_from(value).map_err(|_| format!("escape \\{value} is over 255 in {raw:?}"))?
                }
                Some(x) => x,
            }
        } else {
            b
        };
        if !b.is_ascii() {
            return Err("strings must be ASCII".into());
        }
        out.push(char::from(b));
    }
    Ok(out)
}

/// Quote a decoded string for `RData::parse`, which knows `\"` and `\\` only.
fn requote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ORIGIN: &str = "apps.example.test.";

    fn rec(name: &str, ttl: u32, data: RData) -> Record {
        Record { name: name.into(), ttl, data }
    }

    fn a(name: &str, ttl: u32, ip: [u8; 4]) -> Record {
        rec(name, ttl, RData::A(Ipv4Addr::from(ip)))
    }

    fn err(text: &str) -> MasterFileError {
        parse(text, Some(ORIGIN)).unwrap_err()
    }

    #[test]
    fn soa_in_parentheses_with_comments_and_units() {
        let text = "\
$TTL 1h
@   IN  SOA ns1.example.test. hostmaster ( ; primary, contact
        2024010101 ; serial
        2h         ; refresh
        30m        ; retry
        1w         ; expire
        300 )      ; minimum
    IN  NS  ns1.example.test.
";
        let recs = parse(text, Some(ORIGIN)).unwrap();
        assert_eq!(
            recs,
            vec![
                rec(
                    ORIGIN,
                    3600,
                    RData::Soa {
                        mname: "ns1.example.test.".into(),
                        rname: "hostmaster.apps.example.test.".into(),
                        serial: 2_024_010_101,
                        refresh: 7200,
                        retry: 1800,
                        expire: 604_800,
                        minimum: 300,
                    }
                ),
                rec(ORIGIN, 3600, RData::Ns("ns1.example.test.".into())),
            ]
        );
    }

    #[test]
    fn ttl_default_explicit_and_inherited() {
        let text = "www 300 A 192.0.2.1\nx A 192.0.2.2\n$TTL 1d\ny A 192.0.2.3\nz 2h30m A 192.0.2.4\nw A 192.0.2.5\n";
        let recs = parse(text, Some(ORIGIN)).unwrap();
        let ttls: Vec<u32> = recs.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [300, 300, 86_400, 9000, 86_400]);
        assert_eq!(
            err("www A 192.0.2.1\n"),
            MasterFileError { line: 1, reason: "no TTL: give the record a TTL or set $TTL before it".into() }
        );
    }

    #[test]
    fn ttl_units() {
        for (text, want) in [("0", 0), ("1h", 3600), ("30m", 1800), ("1d", 86_400), ("1w", 604_800), ("2h30m", 9000), ("1H1S", 3601)] {
            assert_eq!(parse_ttl(text), Ok(want), "{text}");
        }
        assert_eq!(parse_ttl("2147483647"), Ok(TTL_MAX));
        for bad in ["", "h", "1x", "1h30", "2147483648", "99999999999999999999999", "4000w", "1h-"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ttl_and_class_in_either_order() {
        let text = "a 60 IN A 192.0.2.1\nb IN 60 A 192.0.2.1\nc in a 192.0.2.1\nd 60 a 192.0.2.1\n";
        let recs = parse(text, Some(ORIGIN)).unwrap();
        assert_eq!(recs.len(), 4);
        assert!(recs.iter().all(|r| r.ttl == 60 && r.data == RData::A(Ipv4Addr::new(192, 0, 2, 1))));
        assert_eq!(err("a 60 IN IN A 192.0.2.1").reason, "the class is given twice");
        assert_eq!(err("a 60 60 A 192.0.2.1").reason, "the TTL is given twice");
    }

    #[test]
    fn origin_switches_and_may_be_relative() {
        let text = "$TTL 60\nwww A 192.0.2.1\n$ORIGIN other.test.\nwww A 192.0.2.2\n$ORIGIN sub\n@ A 192.0.2.3\nwww CNAME @\n";
        let recs = parse(text, Some(ORIGIN)).unwrap();
        assert_eq!(
            recs,
            vec![
                a("www.apps.example.test.", 60, [192, 0, 2, 1]),
                a("www.other.test.", 60, [192, 0, 2, 2]),
                a("sub.other.test.", 60, [192, 0, 2, 3]),
                rec("www.sub.other.test.", 60, RData::Cname("sub.other.test.".into())),
            ]
        );
        // No initial origin: fine until a relative name needs one.
        assert_eq!(parse("$ORIGIN Apps.Example.TEST.\n@ 60 A 192.0.2.1\n", None).unwrap(), vec![a(ORIGIN, 60, [192, 0, 2, 1])]);
        let e = parse("www.example.test. 60 A 192.0.2.1\nwww 60 A 192.0.2.1\n", None).unwrap_err();
        assert_eq!(e, MasterFileError { line: 2, reason: "owner name: relative name \"www\" but no $ORIGIN is set".into() });
        let e = parse("x.test. 60 CNAME www\n", None).unwrap_err();
        assert_eq!(e.reason, "relative name \"www\" but no $ORIGIN is set");
        assert_eq!(parse("", Some("not-absolute")).unwrap_err().line, 0);
    }

    #[test]
    fn blank_owner_repeats_the_previous_one() {
        let text = "www 60 A 192.0.2.1\n\t60 AAAA 2001:db8::1\n  60 TXT hello\n";
        let recs = parse(text, Some(ORIGIN)).unwrap();
        assert!(recs.iter().all(|r| r.name == "www.apps.example.test."));
        assert_eq!(recs[1].data, RData::Aaaa("2001:db8::1".parse::<Ipv6Addr>().unwrap()));
        assert_eq!(err("  60 A 192.0.2.1").line, 1);
        // A directive in between keeps the owner.
        let recs = parse("www 60 A 192.0.2.1\n$TTL 5\n A 192.0.2.2\n", Some(ORIGIN)).unwrap();
        assert_eq!(recs[1], a("www.apps.example.test.", 5, [192, 0, 2, 2]));
    }

    #[test]
    fn at_and_relative_and_absolute_names() {
        let text = "@ 60 MX 10 mail\n@ 60 MX 20 mail.elsewhere.test.\nMail.Apps.Example.Test. 60 CNAME @\n_sip._tcp 60 SRV 0 5 5060 sip\n";
        let recs = parse(text, Some(ORIGIN)).unwrap();
        assert_eq!(
            recs,
            vec![
                rec(ORIGIN, 60, RData::Mx { preference: 10, exchange: "mail.apps.example.test.".into() }),
                rec(ORIGIN, 60, RData::Mx { preference: 20, exchange: "mail.elsewhere.test.".into() }),
                rec("mail.apps.example.test.", 60, RData::Cname(ORIGIN.into())),
                rec(
                    "_sip._tcp.apps.example.test.",
                    60,
                    RData::Srv { priority: 0, weight: 5, port: 5060, target: "sip.apps.example.test.".into() }
                ),
            ]
        );
    }

    #[test]
    fn wildcard_owners() {
        let text = "$TTL 60\n* A 192.0.2.1\n*.t1 A 192.0.2.2\n*.t2.apps.example.test. A 192.0.2.3\n";
        let names: Vec<String> = parse(text, Some(ORIGIN)).unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["*.apps.example.test.", "*.t1.apps.example.test.", "*.t2.apps.example.test."]);
        assert!(err("*x 60 A 192.0.2.1").reason.contains("'*' must be a whole label"));
        assert!(err("a.* 60 A 192.0.2.1").reason.contains("character '*'"));
        assert!(err("*..x 60 A 192.0.2.1").reason.starts_with("owner name: "));
        assert!(err("x 60 CNAME *.t1").reason.contains("character '*'"));
    }

    #[test]
    fn comments_are_ignored_outside_quotes() {
        let text = "; a zone\n\n   ; indented comment, not a blank owner\nwww 60 TXT \"a;b\" ; trailing\n; end";
        let recs = parse(text, Some(ORIGIN)).unwrap();
        assert_eq!(recs, vec![rec("www.apps.example.test.", 60, RData::Txt(vec!["a;b".into()]))]);
    }

    #[test]
    fn crlf_line_endings() {
        let recs = parse("www 60 A 192.0.2.1\r\n\t60 A 192.0.2.2\r\n", Some(ORIGIN)).unwrap();
        assert_eq!(recs.len(), 2);
    }

    #[test]
    fn escapes_in_strings() {
        let text = r#"t 60 TXT "say \"hi\"" "back\\slash" "\065\066C" bare\032word "semi\;colon"
c 60 CAA 0 issue "ca\046example"
"#;
        let recs = parse(text, Some(ORIGIN)).unwrap();
        assert_eq!(
            recs[0].data,
            RData::Txt(vec!["say \"hi\"".into(), "back\\slash".into(), "ABC".into(), "bare word".into(), "semi;colon".into()])
        );
        assert_eq!(recs[1].data, RData::Caa { flags: 0, tag: "issue".into(), value: "ca.example".into() });
        assert!(err(r#"t 60 TXT "\256""#).reason.contains("over 255"));
        assert!(err(r#"t 60 TXT "\12x""#).reason.contains("three digits"));
        assert_eq!(err(r#"t 60 TXT "\200""#).reason, "strings must be ASCII");
        assert_eq!(err("t 60 TXT \"é\"").reason, "strings must be ASCII");
        assert!(err(&format!("t 60 TXT \"{}\"", "x".repeat(256))).reason.contains("exceeds 255"));
        assert_eq!(err(&format!("t 60 TXT {}", "x ".repeat(17))).reason, "17 strings, at most 16");
        assert!(err(r"t 60 A 192.0.2.\049").reason.contains("escapes are not supported"));
    }

    #[test]
    fn errors_carry_the_starting_line() {
        let text = "$TTL 60\nok A 192.0.2.1\n\n; comment\nbad A 192.0.2.1 192.0.2.2\n";
        assert_eq!(err(text).to_string(), "line 5: A data needs 1 field(s), got 2: \"192.0.2.1 192.0.2.2\"");
        // An error inside parentheses is reported where the record starts.
        let text = "$TTL 60\n@ SOA ns1 host (\n 1 2 3 4\n x )\n";
        assert_eq!(
            err(text),
            MasterFileError { line: 2, reason: "SOA minimum: \"x\" is not a TTL (seconds, or a duration such as 1h30m)".into() }
        );
        assert_eq!(err("$TTL 60\n@ SOA ns1 host ( 1 2 3 4 5\n"), MasterFileError { line: 2, reason: "'(' is never closed".into() });
        assert_eq!(err("$TTL 60\nx A 1.2.3.4 )\n").line, 2);
        assert_eq!(err("$TTL 60\nx TXT \"open\n").reason, "a quoted string is not closed on its line");
        assert_eq!(
            err("x 60 SOA a. b. 1 2 3 4").reason,
            "SOA data needs 7 field(s) (mname rname serial refresh retry expire minimum), got 6"
        );
        assert_eq!(err("x 60 A").reason, "A data needs 1 field(s), got 0: \"\"");
        assert_eq!(err("x 60").reason, "missing record type");
        assert!(err("a..b 60 A 192.0.2.1").reason.starts_with("owner name: "));
        assert_eq!(err("x 60 CAA 0 issue").reason, "CAA data needs 3 field(s) (flags tag value), got 2");
    }

    #[test]
    fn unsupported_type_class_and_directives() {
        assert_eq!(
            err("\n\nx 60 IN PTR host.example.test.").to_string(),
            "line 3: record type \"PTR\" is not supported (A, AAAA, CNAME, NS, MX, TXT, SRV, CAA, SOA)"
        );
        assert_eq!(err("x 60 CH TXT hello").reason, "class CH is not supported (only IN)");
        assert_eq!(err("x HS 60 A 192.0.2.1").reason, "class HS is not supported (only IN)");
        assert_eq!(err("$INCLUDE other.zone").reason, "$INCLUDE is not supported");
        assert!(err("$GENERATE 1-2 x A 1.2.3.4").reason.starts_with("unknown directive"));
        assert_eq!(err("$TTL").reason, "$TTL needs 1 value, got 0");
    }

    #[test]
    fn writes_absolute_names_class_and_ttl() {
        let recs = vec![
            rec(
                ORIGIN,
                3600,
                RData::Soa {
                    mname: "ns1.example.test.".into(),
                    rname: "hostmaster.example.test.".into(),
                    serial: 7,
                    refresh: 3600,
                    retry: 600,
                    expire: 604_800,
                    minimum: 60,
                },
            ),
            a("www.apps.example.test.", 300, [192, 0, 2, 1]),
            rec("t.apps.example.test.", 60, RData::Txt(vec!["a \"q\" \\ b".into(), "tab\there\u{7f}".into()])),
            rec("apps.example.test.", 60, RData::Caa { flags: 128, tag: "issue".into(), value: "ca.example".into() }),
        ];
        let text = write(ORIGIN, &recs);
        assert_eq!(
            text,
            "$ORIGIN apps.example.test.\n\
             apps.example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 7 3600 600 604800 60\n\
             www.apps.example.test. 300 IN A 192.0.2.1\n\
             t.apps.example.test. 60 IN TXT \"a \\\"q\\\" \\\\ b\" \"tab\\009here\\127\"\n\
             apps.example.test. 60 IN CAA 128 issue \"ca.example\"\n"
        );
        assert_eq!(parse(&text, None).unwrap(), recs);
    }

    // ---- properties ----

    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec("[a-z0-9_][a-z0-9_-]{0,9}", 0..3).prop_map(|labels| {
            let mut name = labels.join(".");
            if !name.is_empty() {
                name.push('.');
            }
            name + ORIGIN
        })
    }

    /// A name under the origin, perhaps a wildcard.
    fn owner() -> impl Strategy<Value = String> {
        (name(), any::<bool>()).prop_map(|(name, wild)| if wild { format!("*.{name}") } else { name })
    }

    fn target() -> impl Strategy<Value = String> {
        prop_oneof![name(), "[a-z][a-z0-9-]{0,8}\\.[a-z]{2,5}\\.".prop_map(String::from)]
    }

    /// Any ASCII, including quotes, backslashes and control characters.
    fn string() -> impl Strategy<Value = String> {
        proptest::collection::vec(0u8..128, 0..=255).prop_map(|b| b.into_iter().map(char::from).collect())
    }

    fn rdata() -> impl Strategy<Value = RData> {
        prop_oneof![
            any::<u32>().prop_map(|a| RData::A(Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| RData::Aaaa(Ipv6Addr::from(a))),
            target().prop_map(RData::Cname),
            target().prop_map(RData::Ns),
            (any::<u16>(), target()).prop_map(|(preference, exchange)| RData::Mx { preference, exchange }),
            proptest::collection::vec(string(), 1..=4).prop_map(RData::Txt),
            (any::<u16>(), any::<u16>(), any::<u16>(), target()).prop_map(|(priority, weight, port, target)| RData::Srv {
                priority,
                weight,
                port,
                target
            }),
            (any::<u8>(), "[a-z0-9]{1,15}", string()).prop_map(|(flags, tag, value)| RData::Caa { flags, tag, value }),
            (target(), target(), any::<u32>(), proptest::array::uniform4(0..=TTL_MAX)).prop_map(|(mname, rname, serial, t)| {
                RData::Soa { mname, rname, serial, refresh: t[0], retry: t[1], expire: t[2], minimum: t[3] }
            }),
        ]
    }

    proptest! {
        #[test]
        fn write_then_parse_round_trips(
            recs in proptest::collection::vec((owner(), 0..=TTL_MAX, rdata()).prop_map(|(name, ttl, data)| Record { name, ttl, data }), 0..20)
        ) {
            let text = write(ORIGIN, &recs);
            prop_assert_eq!(parse(&text, None), Ok(recs), "{}", text);
        }

        #[test]
        fn never_panics_on_arbitrary_text(text in any::<String>()) {
            let _ = parse(&text, Some(ORIGIN));
        }

        #[test]
        fn never_panics_on_zone_like_text(text in "([a-z0-9@$ \t\n();\"\\\\.]|IN|CH|TXT|SOA|A|1h|\\\\0)*") {
            let _ = parse(&text, Some(ORIGIN));
            let _ = parse(&text, None);
        }
    }
}
