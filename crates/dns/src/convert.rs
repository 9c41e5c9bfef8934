//! Domain records to hickory wire records.

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, NULL, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use switchboard_domain::RData as D;

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok()
}

/// Convert one record. Domain names were validated on write, so `None`
/// (a name hickory will not parse) is dropped rather than answered wrongly.
/// A record owned by the question's name (`qname`, in domain form) is owned
/// by `asked`, the name as it came on the wire: a wildcard-like answer for
/// a label Switchboard cannot spell keeps the client's own bytes.
pub fn record(r: &switchboard_domain::Record, qname: &str, asked: &Name) -> Option<Record> {
    let owner = if r.name == qname { asked.to_lowercase() } else { name(&r.name)? };
    let rdata = match &r.data {
        D::A(a) => RData::A(A(*a)),
        D::Aaaa(a) => RData::AAAA(AAAA(*a)),
        D::Cname(n) => RData::CNAME(CNAME(name(n)?)),
        D::Ptr(n) => RData::PTR(PTR(name(n)?)),
        D::Ns(n) => RData::NS(NS(name(n)?)),
        D::Mx { preference, exchange } => RData::MX(MX::new(*preference, name(exchange)?)),
        D::Txt(strings) => RData::TXT(TXT::new(strings.clone())),
        D::Srv { priority, weight, port, target } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
        D::Caa { flags, tag, value } => {
            // RFC 8659 §4.1 wire form: flags, tag length, tag, value. Encoded
            // directly: the data was validated when written.
            let mut raw = Vec::with_capacity(2 + tag.len() + value.len());
            raw.push(*flags);
            raw.push(u8::try_from(tag.len()).ok()?);
            raw.extend_from_slice(tag.as_bytes());
            raw.extend_from_slice(value.as_bytes());
            RData::Unknown { code: RecordType::CAA, rdata: NULL::with(raw) }
        }
        D::Key { .. } | D::Cds { .. } => {
            RData::Unknown { code: RecordType::from(r.data.rtype().code()), rdata: NULL::with(key_rdata(&r.data)?) }
        }
        D::Soa { mname, rname, serial, refresh, retry, expire, minimum } => RData::SOA(SOA::new(
            name(mname)?,
            name(rname)?,
            *serial,
            i32::try_from(*refresh).ok()?,
            i32::try_from(*retry).ok()?,
            i32::try_from(*expire).ok()?,
            *minimum,
        )),
    };
    Some(Record::from_rdata(owner, r.ttl, rdata))
}

/// The wire RDATA of a DNSKEY, CDNSKEY or CDS record (no names in it, so
/// the same compressed or not): what both paths write.
pub fn key_rdata(data: &D) -> Option<Vec<u8>> {
    match data {
        D::Key { flags, algorithm, public_key, .. } => {
            let mut out = Vec::with_capacity(4 + public_key.len());
            out.extend_from_slice(&flags.to_be_bytes());
            out.push(3);
            out.push(*algorithm);
            out.extend_from_slice(public_key);
            Some(out)
        }
        D::Cds { key_tag, algorithm, digest_type, digest } => {
            let mut out = Vec::with_capacity(4 + digest.len());
            out.extend_from_slice(&key_tag.to_be_bytes());
            out.push(*algorithm);
            out.push(*digest_type);
            out.extend_from_slice(digest);
            Some(out)
        }
        _ => None,
    }
}

/// The question's name in domain form: labels lower-cased and joined, any
/// label with a byte outside letters, digits, '-', '_' and '*' replaced by
/// `#` (no name Switchboard holds has one, so it matches nothing but a
/// wildcard-like rule, as in a zone file). Works on the wire labels, never
/// on a display form (which would turn `xn--` labels into Unicode).
pub fn qname(asked: &Name) -> String {
    let mut out = String::with_capacity(asked.len() + 1);
    for label in asked.iter() {
        if label.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*')) {
            out.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
        } else {
            out.push('#');
        }
        out.push('.');
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qname_keeps_punycode_and_masks_other_bytes() {
        assert_eq!(qname(&Name::from_ascii("XN--Caf-dma.Apps.Test.").unwrap()), "xn--caf-dma.apps.test.");
        let escaped = Name::from_labels(vec![b"a.b".to_vec(), b"apps".to_vec(), b"test".to_vec()]).unwrap();
        assert_eq!(qname(&escaped), "#.apps.test.");
        assert_eq!(qname(&Name::root()), ".");
    }
}
