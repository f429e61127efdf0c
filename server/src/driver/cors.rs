//! Cross-origin resource sharing for the polling transport, as browsers require it when the
//! page comes from another origin: preflight answers and the headers of every answer.

use std::fmt;
use std::sync::Arc;

use volley_core::http::{RequestHead, Response};

/// Which origins may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Any origin (`Access-Control-Allow-Origin: *`, or the request's origin when
    /// credentials are allowed, since browsers refuse `*` with credentials).
    Any,
    /// Only these origins (`https://example.com`), answered by name.
    List(Vec<String>),
    /// The origins a function accepts (the reference's `origin` given as a function), answered
    /// by name. See [`Cors::origin_fn`].
    Predicate(OriginFn),
}

/// A function deciding whether an origin may call (see [`Cors::origin_fn`]). Two are equal
/// only when they are the same function object.
#[derive(Clone)]
pub struct OriginFn(Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl OriginFn {
    /// Wraps `f`.
    pub fn new(f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        OriginFn(Arc::new(f))
    }

    /// Whether `origin` may call.
    pub fn allows(&self, origin: &str) -> bool {
        (self.0)(origin)
    }
}

impl fmt::Debug for OriginFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OriginFn(..)")
    }
}

impl PartialEq for OriginFn {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OriginFn {}

/// CORS options (the reference server's `cors` option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins.
    pub origins: Origins,
    /// Allowed methods in preflight answers.
    pub methods: Vec<String>,
    /// Allowed request headers; `None` reflects what the preflight asks for.
    pub allowed_headers: Option<Vec<String>>,
    /// Response headers the page may read.
    pub exposed_headers: Vec<String>,
    /// Whether cookies and credentials may be sent.
    pub credentials: bool,
    /// How long a preflight answer may be cached, in seconds.
    pub max_age: Option<u64>,
}

impl Default for Cors {
    fn default() -> Self {
        Cors {
            origins: Origins::Any,
            methods: ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"]
                .map(str::to_owned)
                .to_vec(),
            allowed_headers: None,
            exposed_headers: Vec::new(),
            credentials: false,
            max_age: None,
        }
    }
}

impl Cors {
    /// Any origin, default methods, no credentials.
    pub fn any() -> Self {
        Self::default()
    }

    /// Only `origins`.
    pub fn origins(origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Cors {
            origins: Origins::List(origins.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }

    /// The origins `allow` accepts, given the request's `Origin` value
    /// (`https://example.com`): for example every subdomain of a site. Applied as a list is:
    /// polling answers name an accepted origin in `Access-Control-Allow-Origin`, and a
    /// WebSocket upgrade from an origin it refuses gets `403`.
    pub fn origin_fn(allow: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Cors {
            origins: Origins::Predicate(OriginFn::new(allow)),
            ..Self::default()
        }
    }

    /// Allows credentials.
    pub fn credentials(mut self, allow: bool) -> Self {
        self.credentials = allow;
        self
    }

    /// The `Access-Control-Allow-Origin` value for `head`, and whether it varies by origin.
    fn allow_origin(&self, head: &RequestHead) -> Option<(String, bool)> {
        let origin = head.header("origin");
        match &self.origins {
            Origins::Any if self.credentials => origin.map(|o| (o.to_owned(), true)),
            Origins::Any => Some(("*".to_owned(), false)),
            Origins::List(list) => {
                let o = origin?;
                list.iter().any(|a| a == o).then(|| (o.to_owned(), true))
            }
            Origins::Predicate(allow) => {
                let o = origin?;
                allow.allows(o).then(|| (o.to_owned(), true))
            }
        }
    }

    fn origin_headers(&self, head: &RequestHead, mut response: Response) -> Response {
        if let Some((origin, varies)) = self.allow_origin(head) {
            response = response.header("Access-Control-Allow-Origin", origin);
            if varies {
                response = response.header("Vary", "Origin");
            }
            if self.credentials {
                response = response.header("Access-Control-Allow-Credentials", "true");
            }
        }
        response
    }

    /// Whether a WebSocket upgrade may proceed: with a list of origins (or a predicate), one
    /// that names another origin is refused (browsers always send `Origin` on a WebSocket handshake, and no CORS
    /// rule protects it, so this is what stops cross-site WebSocket hijacking). A handshake
    /// without `Origin` (a native client, not a browser) passes; so does any origin with
    /// [`Origins::Any`].
    pub fn allows_upgrade(&self, head: &RequestHead) -> bool {
        match (&self.origins, head.header("origin")) {
            (Origins::List(list), Some(origin)) => list.iter().any(|a| a == origin),
            (Origins::Predicate(allow), Some(origin)) => allow.allows(origin),
            _ => true,
        }
    }

    /// Whether `head` is a preflight request (it is answered here, not by the machine).
    pub fn is_preflight(head: &RequestHead) -> bool {
        head.method_str() == "OPTIONS"
    }

    /// The answer to a preflight request.
    pub fn preflight(&self, head: &RequestHead) -> Response {
        let mut response = self.origin_headers(head, Response::new(204));
        response = response.header("Access-Control-Allow-Methods", self.methods.join(","));
        let headers = match &self.allowed_headers {
            Some(list) => Some(list.join(",")),
            None => head
                .header("access-control-request-headers")
                .map(str::to_owned),
        };
        if let Some(h) = headers.filter(|h| !h.is_empty()) {
            response = response.header("Access-Control-Allow-Headers", h);
            if self.allowed_headers.is_none() {
                response = response.header("Vary", "Access-Control-Request-Headers");
            }
        }
        if let Some(age) = self.max_age {
            response = response.header("Access-Control-Max-Age", age.to_string());
        }
        response
    }

    /// Adds the CORS headers of an actual (non-preflight) answer.
    pub fn decorate(&self, head: &RequestHead, mut response: Response) -> Response {
        response = self.origin_headers(head, response);
        if !self.exposed_headers.is_empty() {
            response = response.header(
                "Access-Control-Expose-Headers",
                self.exposed_headers.join(","),
            );
        }
        response
    }
}
