//! Resource records in domain terms: types, data and their text form.
//! The DNS front end converts these to wire records; nothing here knows a packet.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::name;

/// Largest TTL (RFC 2181 §8).
pub const TTL_MAX: u32 = 2_147_483_647;
/// Longest character-string in TXT data (RFC 1035 §3.3).
pub const TXT_STRING_LEN_MAX: usize = 255;
/// Most character-strings in one TXT record.
pub const TXT_STRINGS_MAX: usize = 16;

/// Record types Switchboard serves. `Other` carries any other type code so a
/// query for it can be answered NODATA rather than refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RType {
    A,
    Ns,
    Cname,
    Soa,
    Mx,
    Txt,
    Aaaa,
    Srv,
    Caa,
    /// PTR: only in catalog zones (RFC 9432 member entries).
    Ptr,
    Any,
    Other(u16),
}

impl RType {
    pub const DS: RType = RType::Other(43);
    pub const RRSIG: RType = RType::Other(46);
    pub const NSEC: RType = RType::Other(47);
    pub const DNSKEY: RType = RType::Other(48);
    pub const CDS: RType = RType::Other(59);
    pub const CDNSKEY: RType = RType::Other(60);

    pub fn from_code(code: u16) -> Self {
        match code {
            1 => RType::A,
            2 => RType::Ns,
            5 => RType::Cname,
            6 => RType::Soa,
            15 => RType::Mx,
            16 => RType::Txt,
            28 => RType::Aaaa,
            33 => RType::Srv,
            257 => RType::Caa,
            12 => RType::Ptr,
            255 => RType::Any,
            other => RType::Other(other),
        }
    }

    pub fn code(self) -> u16 {
        match self {
            RType::A => 1,
            RType::Ns => 2,
            RType::Cname => 5,
            RType::Soa => 6,
            RType::Mx => 15,
            RType::Txt => 16,
            RType::Aaaa => 28,
            RType::Srv => 33,
            RType::Caa => 257,
            RType::Ptr => 12,
            RType::Any => 255,
            RType::Other(c) => c,
        }
    }

    /// The types an operator may write as static records.
    pub fn parse_static(field: &str, text: &str) -> Result<Self, ValidationError> {
        match text.to_ascii_uppercase().as_str() {
            "A" => Ok(RType::A),
            "AAAA" => Ok(RType::Aaaa),
            "CNAME" => Ok(RType::Cname),
            "NS" => Ok(RType::Ns),
            "MX" => Ok(RType::Mx),
            "TXT" => Ok(RType::Txt),
            "SRV" => Ok(RType::Srv),
            "CAA" => Ok(RType::Caa),
            _ => Err(ValidationError::new(field, format!("record type {text:?} is not supported (A, AAAA, CNAME, NS, MX, TXT, SRV, CAA)"))),
        }
    }
}

impl fmt::Display for RType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RType::A => f.write_str("A"),
            RType::Ns => f.write_str("NS"),
            RType::Cname => f.write_str("CNAME"),
            RType::Soa => f.write_str("SOA"),
            RType::Mx => f.write_str("MX"),
            RType::Txt => f.write_str("TXT"),
            RType::Aaaa => f.write_str("AAAA"),
            RType::Srv => f.write_str("SRV"),
            RType::Caa => f.write_str("CAA"),
            RType::Ptr => f.write_str("PTR"),
            RType::Any => f.write_str("ANY"),
            RType::Other(43) => f.write_str("DS"),
            RType::Other(46) => f.write_str("RRSIG"),
            RType::Other(47) => f.write_str("NSEC"),
            RType::Other(48) => f.write_str("DNSKEY"),
            RType::Other(59) => f.write_str("CDS"),
            RType::Other(60) => f.write_str("CDNSKEY"),
            RType::Other(c) => write!(f, "TYPE{c}"),
        }
    }
}

/// The data of one record. Names are absolute and lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Ns(String),
    Mx {
        preference: u16,
        exchange: String,
    },
    Txt(Vec<String>),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Caa {
        flags: u8,
        tag: String,
        value: String,
    },
    Ptr(String),
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
    /// DNSKEY, or CDNSKEY when `cdnskey`: made from a signed zone's keys
    /// (`dnssec`), never written by an operator.
    Key {
        cdnskey: bool,
        flags: u16,
        algorithm: u8,
        public_key: Vec<u8>,
    },
    /// CDS: a DS the zone asks its parent to publish (RFC 7344).
    Cds {
        key_tag: u16,
        algorithm: u8,
        digest_type: u8,
        digest: Vec<u8>,
    },
}

impl RData {
    pub fn rtype(&self) -> RType {
        match self {
            RData::A(_) => RType::A,
            RData::Aaaa(_) => RType::Aaaa,
            RData::Cname(_) => RType::Cname,
            RData::Ns(_) => RType::Ns,
            RData::Mx { .. } => RType::Mx,
            RData::Txt(_) => RType::Txt,
            RData::Srv { .. } => RType::Srv,
            RData::Caa { .. } => RType::Caa,
            RData::Ptr(_) => RType::Ptr,
            RData::Soa { .. } => RType::Soa,
            RData::Key { cdnskey: false, .. } => RType::DNSKEY,
            RData::Key { cdnskey: true, .. } => RType::CDNSKEY,
            RData::Cds { .. } => RType::CDS,
        }
    }

    /// The name this record points at, if any (for additional-section processing).
    pub fn target(&self) -> Option<&str> {
        match self {
            RData::Cname(n) | RData::Ns(n) => Some(n),
            RData::Mx { exchange, .. } => Some(exchange),
            RData::Srv { target, .. } => Some(target),
            _ => None,
        }
    }

    /// Parse record data in its zone-file text form. Target names may be
    /// relative to `apex`.
    pub fn parse(field: &str, rtype: RType, text: &str, apex: &str) -> Result<Self, ValidationError> {
        let err = |reason: String| ValidationError::new(field, reason);
        let words: Vec<&str> = text.split_whitespace().collect();
        let want = |n: usize| -> Result<(), ValidationError> {
            if words.len() == n {
                Ok(())
            } else {
                Err(err(format!("{rtype} data needs {n} field(s), got {}: {text:?}", words.len())))
            }
        };
        let num = |w: &str, what: &str| -> Result<u16, ValidationError> {
            w.parse::<u16>().map_err(|_| err(format!("{what} {w:?} is not a number from 0 to 65535")))
        };
        match rtype {
            RType::A => {
                want(1)?;
                words[0].parse().map(RData::A).map_err(|_| err(format!("{text:?} is not an IPv4 address")))
            }
            RType::Aaaa => {
                want(1)?;
                words[0].parse().map(RData::Aaaa).map_err(|_| err(format!("{text:?} is not an IPv6 address")))
            }
            RType::Cname => {
                want(1)?;
                Ok(RData::Cname(name::target(field, words[0], apex)?))
            }
            RType::Ns => {
                want(1)?;
                Ok(RData::Ns(name::target(field, words[0], apex)?))
            }
            RType::Ptr => {
                want(1)?;
                Ok(RData::Ptr(name::target(field, words[0], apex)?))
            }
            RType::Mx => {
                want(2)?;
                Ok(RData::Mx { preference: num(words[0], "preference")?, exchange: name::target(field, words[1], apex)? })
            }
            RType::Srv => {
                want(4)?;
                Ok(RData::Srv {
                    priority: num(words[0], "priority")?,
                    weight: num(words[1], "weight")?,
                    port: num(words[2], "port")?,
                    target: name::target(field, words[3], apex)?,
                })
            }
            RType::Txt => Ok(RData::Txt(parse_character_strings(field, text)?)),
            RType::Caa => {
                // Fields apart by any run of blanks; the value is the rest.
                let Some((flags, (tag, value))) = split_field(text).and_then(|(f, rest)| Some((f, split_field(rest)?))) else {
                    return Err(err(format!("CAA data needs flags, tag and value: {text:?}")));
                };
                let flags = flags.parse::<u8>().map_err(|_| err(format!("CAA flags {flags:?} is not 0-255")))?;
                let tag = tag.to_ascii_lowercase();
                if tag.is_empty() || tag.len() > 15 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(err(format!("CAA tag {tag:?} must be 1-15 letters or digits")));
                }
                let strings = parse_character_strings(field, value)?;
                if strings.len() != 1 {
                    return Err(err("CAA value must be one string".into()));
                }
                let value = strings.into_iter().next().unwrap_or_default();
                Ok(RData::Caa { flags, tag, value })
            }
            RType::Soa | RType::Any | RType::Other(_) => Err(err(format!("{rtype} records cannot be written as static records"))),
        }
    }
}

/// The first blank-separated field of `text` and the rest, blanks trimmed.
fn split_field(text: &str) -> Option<(&str, &str)> {
    text.trim_start().split_once(char::is_whitespace).map(|(a, b)| (a, b.trim_start()))
}

/// Parse one or more character-strings: `"quoted with \" escapes"` or bare words.
fn parse_character_strings(field: &str, text: &str) -> Result<Vec<String>, ValidationError> {
    let err = |reason: String| ValidationError::new(field, reason);
    let mut out = Vec::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut s = String::new();
        if c == '"' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        // \DDD: one byte in decimal (RFC 1035 §5.1).
                        Some(d) if d.is_ascii_digit() => {
                            let (Some(d2), Some(d3)) = (chars.next(), chars.next()) else {
                                return Err(err("\\DDD escape needs three digits".into()));
                            };
                            let code = [d, d2, d3].iter().collect::<String>().parse::<u8>();
                            match code {
                                Ok(b) if d2.is_ascii_digit() && d3.is_ascii_digit() => s.push(char::from(b)),
                                _ => return Err(err(format!("\\{d}{d2}{d3} is not a byte in decimal"))),
                            }
                        }
                        Some(e) => s.push(e),
                        None => return Err(err("dangling '\\' in string".into())),
                    },
                    c => s.push(c),
                }
            }
            if !closed {
                return Err(err("unterminated '\"' in string".into()));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                s.push(c);
                chars.next();
            }
        }
        if s.len() > TXT_STRING_LEN_MAX {
            return Err(err(format!("a string of {} bytes exceeds {TXT_STRING_LEN_MAX}", s.len())));
        }
        if !s.is_ascii() {
            return Err(err("strings must be ASCII".into()));
        }
        out.push(s);
    }
    if out.is_empty() {
        return Err(err("needs at least one string".into()));
    }
    if out.len() > TXT_STRINGS_MAX {
        return Err(err(format!("{} strings, at most {TXT_STRINGS_MAX}", out.len())));
    }
    Ok(out)
}

/// One record: owner, TTL, data. Class is always IN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

impl Record {
    pub fn rtype(&self) -> RType {
        self.data.rtype()
    }
}

/// Validate a TTL against RFC 2181's range.
pub fn ttl(field: &str, value: u32) -> Result<u32, ValidationError> {
    if value > TTL_MAX {
        return Err(ValidationError::new(field, format!("{value} exceeds the largest TTL {TTL_MAX}")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const APEX: &str = "apps.test.";

    #[test]
    fn parses_common_types() {
        assert_eq!(RData::parse("d", RType::A, "192.0.2.1", APEX), Ok(RData::A(Ipv4Addr::new(192, 0, 2, 1))));
        assert_eq!(RData::parse("d", RType::Mx, "10 mail", APEX), Ok(RData::Mx { preference: 10, exchange: "mail.apps.test.".into() }));
        assert_eq!(
            RData::parse("d", RType::Txt, r#""v=spf1 -all" second"#, APEX),
            Ok(RData::Txt(vec!["v=spf1 -all".into(), "second".into()]))
        );
        assert_eq!(
            RData::parse("d", RType::Caa, r#"0 issue "letsencrypt.org""#, APEX),
            Ok(RData::Caa { flags: 0, tag: "issue".into(), value: "letsencrypt.org".into() })
        );
        assert!(RData::parse("d", RType::Srv, "0 5 5060 sip.example.test.", APEX).is_ok());
    }

    #[test]
    fn rejects_bad_data_naming_the_field() {
        let e = RData::parse("records[0].data", RType::A, "300.1.1.1", APEX).unwrap_err();
        assert_eq!(e.field, "records[0].data");
        assert!(RData::parse("d", RType::Mx, "mail", APEX).is_err());
        assert!(RData::parse("d", RType::Txt, "\"open", APEX).is_err());
        assert!(RData::parse("d", RType::Txt, &format!("\"{}\"", "x".repeat(256)), APEX).is_err());
        assert!(RData::parse("d", RType::Soa, "x", APEX).is_err());
        assert!(RData::parse("d", RType::Txt, r#""\1x""#, APEX).is_err());
        assert!(RData::parse("d", RType::Txt, r#""\300""#, APEX).is_err());
    }

    #[test]
    fn decimal_escapes_and_blank_runs() {
        assert_eq!(RData::parse("d", RType::Txt, r#""\065\"b""#, APEX), Ok(RData::Txt(vec!["A\"b".into()])));
        assert_eq!(
            RData::parse("d", RType::Caa, "0  issue\t\"ca.test\"", APEX),
            Ok(RData::Caa { flags: 0, tag: "issue".into(), value: "ca.test".into() })
        );
    }
}
