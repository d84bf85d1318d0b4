//! Operator commands beside `portico serve`: checks, key rotation, backup and restore.

pub mod doctor;
pub mod key_rotation;
