//! Key pairs for signing test tokens with RS256 and ES256 (PEM, PKCS#8 / SPKI).
//!
//! For tests only: they are public in this repository and protect nothing.

pub const RSA_PRIVATE_PEM: &str = include_str!("../keys/rsa-private.pem");
pub const RSA_PUBLIC_PEM: &str = include_str!("../keys/rsa-public.pem");
pub const EC_PRIVATE_PEM: &str = include_str!("../keys/ec-private.pem");
pub const EC_PUBLIC_PEM: &str = include_str!("../keys/ec-public.pem");
