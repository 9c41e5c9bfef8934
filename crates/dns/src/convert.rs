//! Domain records to hickory wire records.

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, NULL, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use switchboard_domain::RData as D;

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok()
}

/// Convert one record. Domain names were validated on write, so `None`
/// (a name hickory will not parse) is dropped rather than answered wrongly.
pub fn record(r: &switchboard_domain::Record) -> Option<Record> {
    let owner = name(&r.name)?;
    let rdata = match &r.data {
        D::A(a) => RData::A(A(*a)),
        D::Aaaa(a) => RData::AAAA(AAAA(*a)),
        D::Cname(n) => RData::CNAME(CNAME(name(n)?)),
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
