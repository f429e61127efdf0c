//! HTTP/1.1 request heads, bodies and responses, without IO.
