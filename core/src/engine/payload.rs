//! The polling payload codec.
