//! Who is calling, and may they: API tokens from the `authorization`
//! metadata, checked against this node's replica of the credentials (every
//! node authenticates locally) or the bootstrap admin token of its config.
//!
//! A token is `sbt_<id>_<secret>`: `id` finds the stored credential, and the
//! SHA-256 of `secret` must equal the stored hash. Secrets are 256 random
//! bits, so a fast hash is enough: there is nothing to brute-force.

use std::sync::Arc;

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use switchboard_domain::credential::{self, Access, Actor, Credential, CREDENTIAL_ID_LEN};
use switchboard_domain::State;
use tonic::metadata::MetadataMap;
use tonic::Status;

/// Prefix of every token Switchboard issues.
pub const TOKEN_PREFIX: &str = "sbt_";
/// Shortest bootstrap token accepted.
pub const BOOTSTRAP_TOKEN_LEN_MIN: usize = 16;
/// Bytes of randomness in a token's secret.
const SECRET_BYTES: usize = 32;

/// How this node's API authenticates callers.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Off: every caller may do everything (loopback-only by default, or
    /// `auth = "none"` said explicitly).
    enforce: bool,
    /// SHA-256 of the bootstrap admin token, when the config names one.
    bootstrap: Option<Vec<u8>>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Auth is off, or the caller presented the bootstrap admin token.
    Trusted,
    Credential(Arc<Credential>),
}

impl Caller {
    /// What a command proposed for this caller carries.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Trusted => Actor::Trusted,
            Caller::Credential(c) => Actor::Credential(c.id.clone()),
        }
    }
}

impl Auth {
    /// No authentication: every call is allowed.
    pub fn none() -> Auth {
        Auth { enforce: false, bootstrap: None }
    }

    /// Tokens required; `bootstrap` (when given) is an admin token that
    /// works before any credential exists.
    pub fn tokens(bootstrap: Option<&str>) -> Auth {
        Auth { enforce: true, bootstrap: bootstrap.map(|t| sha256(t.as_bytes())) }
    }

    pub fn enforced(&self) -> bool {
        self.enforce
    }

    /// The caller of a request, from `authorization: Bearer <token>`.
    pub fn caller(&self, state: &State, metadata: &MetadataMap) -> Result<Caller, Status> {
        if !self.enforce {
            return Ok(Caller::Trusted);
        }
        let mut values = metadata.get_all("authorization").iter();
        let Some(value) = values.next() else {
            return Err(Status::unauthenticated(
                "no credentials: send `authorization: Bearer <token>` (switchboard --token or SWITCHBOARD_TOKEN)",
            ));
        };
        // Two tokens would leave it to chance which one a proxy or a log
        // attributes the call to: one header or none.
        if values.next().is_some() {
            return Err(Status::unauthenticated("authorization: sent more than once; send one `Bearer <token>`"));
        }
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| Status::unauthenticated("authorization: expected `Bearer <token>`"))?;
        if let Some(b) = &self.bootstrap {
            if equal(&sha256(token.as_bytes()), b) {
                return Ok(Caller::Trusted);
            }
        }
        let invalid = || Status::unauthenticated("authorization: unknown or revoked token");
        let (id, secret) = token.strip_prefix(TOKEN_PREFIX).and_then(|t| t.split_once('_')).ok_or_else(invalid)?;
        let c = state.credential(id).ok_or_else(invalid)?;
        if !equal(&sha256(secret.as_bytes()), &c.hash) {
            return Err(invalid());
        }
        Ok(Caller::Credential(c.clone()))
    }

    /// Whether `caller` may do `access` on `state`: `PERMISSION_DENIED` if not.
    pub fn allow(&self, state: &State, caller: &Caller, access: Access<'_>) -> Result<(), Status> {
        match caller {
            Caller::Trusted => Ok(()),
            Caller::Credential(c) => credential::authorize(state, c, access).map_err(|d| Status::permission_denied(d.0)),
        }
    }
}

/// A new token: the credential id, the token to hand out, and the hash to store.
pub fn new_token() -> Result<(String, String, Vec<u8>), Status> {
    let rng = SystemRandom::new();
    let mut id = [0u8; CREDENTIAL_ID_LEN / 2];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill(&mut id).and_then(|()| rng.fill(&mut secret)).map_err(|_| Status::internal("no randomness for a new token"))?;
    let (id, secret) = (hex(&id), hex(&secret));
    let hash = sha256(secret.as_bytes());
    Ok((id.clone(), format!("{TOKEN_PREFIX}{id}_{secret}"), hash))
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compare two digests in time independent of where they differ (`subtle`:
/// ring's own constant-time compare is deprecated for outside use).
fn equal(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_verify_against_their_hash() {
        let (id1, t1, h1) = new_token().unwrap();
        let (id2, t2, _) = new_token().unwrap();
        assert_ne!(id1, id2);
        assert_ne!(t1, t2);
        assert_eq!(id1.len(), CREDENTIAL_ID_LEN);
        let secret = t1.strip_prefix(&format!("{TOKEN_PREFIX}{id1}_")).unwrap();
        assert!(equal(&sha256(secret.as_bytes()), &h1));
        assert!(!equal(&sha256(b"other"), &h1));
        assert!(!equal(&h1[..31], &h1));
    }

    #[test]
    fn a_second_authorization_header_is_refused() {
        let auth = Auth::tokens(Some("bootstrap-admin-0123456789abcdef"));
        let state = State::default();
        let mut metadata = MetadataMap::new();
        metadata.append("authorization", tonic::metadata::MetadataValue::from_static("Bearer bootstrap-admin-0123456789abcdef"));
        assert!(matches!(auth.caller(&state, &metadata), Ok(Caller::Trusted)));
        metadata.append("authorization", tonic::metadata::MetadataValue::from_static("Bearer sbt_0000000000000000_x"));
        let e = auth.caller(&state, &metadata).map(|_| ()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("more than once"), "{}", e.message());
    }
}
