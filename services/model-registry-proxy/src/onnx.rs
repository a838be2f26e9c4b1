//! What the proxy reads from an ONNX model: its `metadata_props` and the input contract
//! declared there or in version tags (both defined in `stockcast-model`), and the
//! `sha256` version tag.

pub use stockcast_model::contract::{
    Contract, KEY_FEATURE_NAMES, KEY_FEATURE_VIEW, KEY_FEATURE_VIEW_VERSION, KEY_HORIZON_BARS,
    KEY_TARGET, contract_of,
};
pub use stockcast_model::metadata::{
    DATA_LOCATION_EXTERNAL, GraphProto, ModelProto, StringStringEntryProto, TensorProto,
    encode_model, metadata_props, read_metadata_props,
};

/// Version tag holding the lower-case hex SHA-256 of the ONNX bytes.
pub const TAG_SHA256: &str = "sha256";

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
