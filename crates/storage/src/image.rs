//! The whole applied state as one byte string: the body of a Raft snapshot.

use serde::{Deserialize, Serialize};
use switchboard_domain::state::Parts;
use switchboard_domain::{Challenge, Cluster, Credential, RequestRecord, State, Tenant, Zone, ZoneSpec};

use crate::{decode, encode, Result, StorageError};

/// Bump when the layout changes; decoding refuses other versions.
const IMAGE_VERSION: u32 = 4;

#[derive(Serialize, Deserialize)]
struct Image {
    version: u32,
    revision: u64,
    data_revision: u64,
    zones: Vec<(ZoneSpec, u64)>,
    clusters: Vec<Cluster>,
    tenants: Vec<Tenant>,
    requests: Vec<RequestRecord>,
    challenges: Vec<Challenge>,
    credentials: Vec<Credential>,
}

pub fn encode_state(state: &State) -> Result<Vec<u8>> {
    let image = Image {
        version: IMAGE_VERSION,
        revision: state.revision(),
        data_revision: state.data_revision(),
        zones: state.zones().map(|z| (z.spec.clone(), z.revision)).collect(),
        clusters: state.clusters().map(|c| (**c).clone()).collect(),
        tenants: state.tenants_after(None).map(|t| (**t).clone()).collect(),
        requests: state.requests().map(|r| (**r).clone()).collect(),
        challenges: state.challenges().map(|c| (**c).clone()).collect(),
        credentials: state.credentials().map(|c| (**c).clone()).collect(),
    };
    encode("state image", &image)
}

pub fn decode_state(bytes: &[u8]) -> Result<State> {
    let image: Image = decode("state image", bytes)?;
    if image.version != IMAGE_VERSION {
        return Err(StorageError::Corrupt(format!("state image version {} (this build reads {IMAGE_VERSION})", image.version)));
    }
    let zones = image
        .zones
        .iter()
        .map(|(spec, rev)| Zone::compile(spec, *rev).map_err(|e| StorageError::Corrupt(format!("zone {} in image: {e}", spec.apex))))
        .collect::<Result<Vec<_>>>()?;
    Ok(State::from_parts(Parts {
        revision: image.revision,
        data_revision: image.data_revision,
        zones,
        clusters: image.clusters,
        tenants: image.tenants,
        requests: image.requests,
        challenges: image.challenges,
        credentials: image.credentials,
    }))
}
