//! The whole applied state as one byte string: the body of a Raft snapshot.
//! Its records are the registry's `Value`s, so no kind is named here.

use serde::{Deserialize, Serialize};
use switchboard_domain::state::Marks;
use switchboard_domain::{State, Value};

use crate::{decode, encode, Result, StorageError};

/// Bump when the layout changes; decoding refuses other versions.
const IMAGE_VERSION: u32 = 12;

#[derive(Serialize, Deserialize)]
struct Image {
    version: u32,
    revision: u64,
    marks: Marks,
    /// Every stored value, kind by kind as `State::values` gives them.
    values: Vec<Value>,
}

pub fn encode_state(state: &State) -> Result<Vec<u8>> {
    let image = Image { version: IMAGE_VERSION, revision: state.revision(), marks: state.marks(), values: state.values().collect() };
    encode("state image", &image)
}

pub fn decode_state(bytes: &[u8]) -> Result<State> {
    // The version leads the image: read it alone first, so another
    // version is reported as such rather than as a decoding error.
    let (version, _): (u32, usize) = bincode::serde::decode_from_slice(bytes, crate::config())
        .map_err(|source| StorageError::Decode { what: "state image version".into(), source })?;
    if version != IMAGE_VERSION {
        return Err(StorageError::Corrupt(format!("state image version {version} (this build reads {IMAGE_VERSION})")));
    }
    let image: Image = decode("state image", bytes)?;
    Ok(State::restore(image.revision, image.marks, image.values))
}
