//! Conformance suite: the official JavaScript client against Volley (see README).

#![forbid(unsafe_code)]
