//! The conformance suite's test server.
//!
//! ```text
//! conformance-server [--runtime tokio|smol] [--app scenarios|chat|recovery|msgpack] [--exit-with-stdin]
//! ```
//!
//! Listens on 127.0.0.1 and the port in `PORT` (a free port when unset or `0`) and prints
//! `LISTENING <port>` as its first line on stdout. Engine.IO v3 clients are accepted, the
//! largest message is 2 MB, and `FAST_PING=1` sets a 300 ms ping interval with a 200 ms
//! timeout (the reference suites' values). `--app chat` puts the chat example on `/` (its page
//! is served at `/` either way); the scenario namespaces `/admin`, `/custom` and `/secure`
//! are always there. `--app recovery` is the scenario application with connection state
//! recovery on (a 3 s window) and the handlers of `conformance::recovery` on `/`: recovery
//! appends an offset to every event sent without acknowledgement, so it never runs on the
//! server of the other scenarios; a variant of it (another parser, say) is one more option
//! next to `--app recovery`, asked for by its scenario file's `// @server` line.
//! `--app msgpack` is the scenario application speaking the MessagePack parser
//! (`socket.io-msgpack-parser`) instead of text. With `--exit-with-stdin` the server exits
//! when its standard input closes, so a test driver that dies does not leave it behind.

#[path = "../../../examples/chat/app.rs"]
mod app;

use std::io::Write;
use std::time::Duration;
use volley::driver::ServerConfig;
use volley::runtime::Runtime;
use volley::{Builder, Io};

/// The largest message or polling body: a 1 MiB binary event travels as ~1.4 MB of base64
/// over polling.
const MAX_PAYLOAD: usize = 2_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rt {
    Tokio,
    Smol,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum App {
    Scenarios,
    Chat,
    /// The scenario application with connection state recovery on.
    Recovery,
    /// The scenario application with the MessagePack parser.
    MsgPack,
}

struct Options {
    runtime: Rt,
    app: App,
    port: u16,
    fast_ping: bool,
    exit_with_stdin: bool,
}

fn usage(problem: &str) -> ! {
    eprintln!("conformance-server: {problem}");
    eprintln!(
        "usage: conformance-server [--runtime tokio|smol] [--app scenarios|chat|recovery|msgpack] \
         [--exit-with-stdin]   (env: PORT, FAST_PING=1)"
    );
    std::process::exit(2)
}

fn options() -> Options {
    let mut opts = Options {
        runtime: Rt::Tokio,
        app: App::Scenarios,
        port: 0,
        fast_ping: std::env::var("FAST_PING").is_ok_and(|v| v == "1"),
        exit_with_stdin: false,
    };
    if let Ok(p) = std::env::var("PORT") {
        opts.port = p
            .parse()
            .unwrap_or_else(|_| usage(&format!("PORT is not a port: {p}")));
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runtime" => {
                opts.runtime = match args.next().as_deref() {
                    Some("tokio") => Rt::Tokio,
                    Some("smol") => Rt::Smol,
                    other => usage(&format!("unknown runtime {other:?}")),
                }
            }
            "--app" => {
                opts.app = match args.next().as_deref() {
                    Some("scenarios") => App::Scenarios,
                    Some("chat") => App::Chat,
                    Some("recovery") => App::Recovery,
                    Some("msgpack") => App::MsgPack,
                    other => usage(&format!("unknown app {other:?}")),
                }
            }
            "--exit-with-stdin" => opts.exit_with_stdin = true,
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    opts
}

fn builder(opts: &Options) -> Builder {
    let mut b = volley::builder()
        .allow_eio3(true)
        .max_payload(MAX_PAYLOAD)
        .server_config(ServerConfig::new().fallback(app::site()));
    if opts.app == App::Recovery {
        b = conformance::recovery::options(b);
    }
    if opts.app == App::MsgPack {
        b = b.parser(volley::Parser::MsgPack);
    }
    if opts.fast_ping {
        b = b
            .ping_interval(Duration::from_millis(300))
            .ping_timeout(Duration::from_millis(200));
    }
    b
}

fn install<R: Runtime>(io: &Io<R>, rt: R, opts: &Options) {
    conformance::install(io, opts.app != App::Chat);
    match opts.app {
        App::Chat => app::install(io),
        App::Recovery => conformance::recovery::install(io, rt),
        App::Scenarios | App::MsgPack => {}
    }
}

fn announce(port: u16, opts: &Options) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "LISTENING {port}");
    let _ = writeln!(
        out,
        "conformance server on http://127.0.0.1:{port}/ ({:?}, {:?}, fast ping: {})",
        opts.runtime, opts.app, opts.fast_ping
    );
    let _ = out.flush();
}

fn main() -> std::io::Result<()> {
    let opts = options();
    if opts.exit_with_stdin {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    match opts.runtime {
        Rt::Tokio => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let rt = volley_tokio::TokioRuntime::current();
                let io = builder(&opts).build(rt.clone());
                install(&io, rt, &opts);
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await?;
                announce(listener.local_addr()?.port(), &opts);
                volley_tokio::serve(listener, io.driver().clone()).await
            })
        }
        Rt::Smol => smol::block_on(async {
            let rt = volley_smol::SmolRuntime::new();
            let io = builder(&opts).build(rt.clone());
            install(&io, rt, &opts);
            let listener = smol::net::TcpListener::bind(("127.0.0.1", opts.port)).await?;
            announce(listener.local_addr()?.port(), &opts);
            volley_smol::serve(listener, io.driver().clone()).await
        }),
    }
}
