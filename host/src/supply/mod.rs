//! Supply chain: who signed a plugin, and what the plugin file actually is.

pub mod component;
pub mod oci;
pub mod signing;
pub mod trust;

pub use component::{ComponentError, ComponentInfo, inspect};
pub use signing::{
    KeyError, SignatureError, SigningKey, VerifyingKey, generate_key_pair, sign_blob, verify_blob,
};
pub use trust::TrustStore;
