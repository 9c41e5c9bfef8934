//! DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018):
//! a server cookie is version 1, three reserved bytes, a timestamp and the
//! SipHash-2-4 of the client cookie, those fields and the client's address
//! under a 16-byte secret. Nodes given the same secret (`[dns.cookies]
//! secret`) accept each other's cookies, as anycast needs.

use std::net::IpAddr;

use siphasher::sip::SipHasher24;

use crate::stats::CookieSeen;

/// The EDNS option code of COOKIE.
pub(crate) const OPTION_CODE: u16 = 10;
const CLIENT_LEN: usize = 8;
const SERVER_LEN: usize = 16;
const VERSION: u8 = 1;
/// A server cookie is accepted from up to an hour old to five minutes
/// ahead (RFC 9018 §4.3, allowing for clocks of other nodes).
const MAX_AGE_SECS: u32 = 3600;
const MAX_AHEAD_SECS: u32 = 300;

/// A query's COOKIE option, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inspected {
    pub seen: CookieSeen,
    /// The client cookie, to echo with a fresh server cookie.
    pub client: Option<[u8; CLIENT_LEN]>,
}

/// The server secret.
#[derive(Clone)]
pub struct CookieSecret([u8; 16]);

impl std::fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSecret(..)")
    }
}

impl CookieSecret {
    pub fn new(bytes: [u8; 16]) -> CookieSecret {
        CookieSecret(bytes)
    }

    /// A fresh random secret: cookies then hold for this process only.
    pub fn random() -> Result<CookieSecret, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(CookieSecret(bytes))
    }

    fn hash(&self, client: &[u8; CLIENT_LEN], stamp: u32, ip: IpAddr) -> [u8; 8] {
        let mut input = [0u8; CLIENT_LEN + 8 + 16];
        input[..CLIENT_LEN].copy_from_slice(client);
        input[CLIENT_LEN] = VERSION;
        input[CLIENT_LEN + 4..CLIENT_LEN + 8].copy_from_slice(&stamp.to_be_bytes());
        // An IPv4 client on a dual-stack socket is its IPv4 address.
        let len = match ip.to_canonical() {
            IpAddr::V4(v4) => {
                input[16..20].copy_from_slice(&v4.octets());
                20
            }
            IpAddr::V6(v6) => {
                input[16..32].copy_from_slice(&v6.octets());
                32
            }
        };
        SipHasher24::new_with_key(&self.0).hash(&input[..len]).to_le_bytes()
    }

    /// The server cookie for `client` from `ip` at `now` (seconds since the epoch, mod 2^32).
    pub(crate) fn server_cookie(&self, client: &[u8; CLIENT_LEN], ip: IpAddr, now: u32) -> [u8; SERVER_LEN] {
        let mut cookie = [0u8; SERVER_LEN];
        cookie[0] = VERSION;
        cookie[4..8].copy_from_slice(&now.to_be_bytes());
        cookie[8..].copy_from_slice(&self.hash(client, now, ip));
        cookie
    }

    /// Read a query's COOKIE option (`None`: the query has none).
    pub(crate) fn inspect(&self, option: Option<&[u8]>, ip: IpAddr, now: u32) -> Inspected {
        let Some(data) = option else { return Inspected { seen: CookieSeen::None, client: None } };
        // RFC 7873 §5.2.2: 8 bytes, or 16 to 40.
        if data.len() != CLIENT_LEN && !(16..=40).contains(&data.len()) {
            return Inspected { seen: CookieSeen::Malformed, client: None };
        }
        let mut client = [0u8; CLIENT_LEN];
        client.copy_from_slice(&data[..CLIENT_LEN]);
        let server = &data[CLIENT_LEN..];
        let seen = if server.is_empty() {
            CookieSeen::ClientOnly
        } else if self.valid(&client, server, ip, now) {
            CookieSeen::Valid
        } else {
            CookieSeen::Invalid
        };
        Inspected { seen, client: Some(client) }
    }

    fn valid(&self, client: &[u8; CLIENT_LEN], server: &[u8], ip: IpAddr, now: u32) -> bool {
        if server.len() != SERVER_LEN || server[0] != VERSION || server[1..4] != [0, 0, 0] {
            return false;
        }
        let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        // Serial-number arithmetic on the 32-bit timestamp (RFC 9018 §4.3).
        let age = now.wrapping_sub(stamp);
        let fresh = age <= MAX_AGE_SECS || stamp.wrapping_sub(now) <= MAX_AHEAD_SECS;
        // Not a constant-time comparison: a cookie is a weak authenticator
        // against off-path spoofing, and the hash covers the timestamp.
        fresh && server[8..] == self.hash(client, stamp, ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    fn option(client: &[u8; 8], server: &[u8]) -> Vec<u8> {
        [client.as_slice(), server].concat()
    }

    #[test]
    fn a_server_cookie_is_valid_for_its_client_and_address_and_an_hour() {
        let secret = CookieSecret::new([7; 16]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = 1_700_000_000;
        let server = secret.server_cookie(&CLIENT, ip, now);
        assert_eq!(server[..4], [1, 0, 0, 0], "version 1 and reserved bytes (RFC 9018 §4.2)");
        let seen = |data: &[u8], ip, at| secret.inspect(Some(data), ip, at).seen;
        assert_eq!(seen(&option(&CLIENT, &server), ip, now), CookieSeen::Valid);
        assert_eq!(seen(&option(&CLIENT, &server), ip, now + 3600), CookieSeen::Valid);
        assert_eq!(seen(&option(&CLIENT, &server), ip, now + 3601), CookieSeen::Invalid, "too old");
        assert_eq!(seen(&option(&CLIENT, &server), ip, now - 300), CookieSeen::Valid, "another node's clock a bit ahead");
        assert_eq!(seen(&option(&CLIENT, &server), ip, now - 301), CookieSeen::Invalid);
        assert_eq!(seen(&option(&CLIENT, &server), "192.0.2.2".parse().unwrap(), now), CookieSeen::Invalid, "other address");
        assert_eq!(seen(&option(&[9; 8], &server), ip, now), CookieSeen::Invalid, "other client cookie");
        let other = CookieSecret::new([8; 16]);
        assert_eq!(other.inspect(Some(&option(&CLIENT, &server)), ip, now).seen, CookieSeen::Invalid, "other secret");
    }

    /// RFC 9018 Appendix A.1: a server cookie for 198.51.100.100.
    #[test]
    fn the_rfc_9018_test_vector() {
        let hex = |s: &str| -> Vec<u8> { (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect() };
        let secret: [u8; 16] = hex("e5e973e5a6b2a43f48e7dc849e37bfcf").try_into().unwrap();
        let client: [u8; 8] = hex("2464c4abcf10c957").try_into().unwrap();
        let cookie = CookieSecret::new(secret).server_cookie(&client, "198.51.100.100".parse().unwrap(), 1_559_731_985);
        assert_eq!(cookie.to_vec(), hex("010000005cf79f111f8130c3eee29480"));
        // The same client over a dual-stack socket gets the same cookie.
        let mapped = CookieSecret::new(secret).server_cookie(&client, "::ffff:198.51.100.100".parse().unwrap(), 1_559_731_985);
        assert_eq!(mapped, cookie);
    }

    #[test]
    fn nonzero_reserved_bytes_are_not_ours() {
        let secret = CookieSecret::new([7; 16]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut server = secret.server_cookie(&CLIENT, ip, 100);
        server[2] = 1;
        assert_eq!(secret.inspect(Some(&option(&CLIENT, &server)), ip, 100).seen, CookieSeen::Invalid);
    }

    #[test]
    fn option_lengths_follow_rfc_7873() {
        let secret = CookieSecret::new([7; 16]);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let seen = |len: usize| secret.inspect(Some(&vec![0u8; len]), ip, 0).seen;
        assert_eq!(secret.inspect(None, ip, 0).seen, CookieSeen::None);
        assert_eq!(seen(8), CookieSeen::ClientOnly);
        for bad in [0, 1, 7, 9, 15, 41] {
            assert_eq!(seen(bad), CookieSeen::Malformed, "length {bad}");
        }
        for other in [16, 24, 40] {
            assert_eq!(seen(other), CookieSeen::Invalid, "length {other}: well formed, not ours");
        }
    }
}
