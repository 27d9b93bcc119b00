//! `loadgen run`: one scenario against one server, JSON out.
//! `loadgen prepare-page`: a room with history for the page benchmark.
//! `loadgen report`: the side-by-side table from a directory of results.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use loadgen::{
    adapter::Kind,
    engine::{self, Step},
    prepare,
};
use std::{net::Ipv4Addr, net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for the chat benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one scenario and writes its JSON report.
    Run(Box<RunArgs>),
    /// Signs in, creates a room and posts messages to it; prints the cookie,
    /// then the room page's path (`/r/<id>/<slug>`) on the next line.
    PreparePage {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "bench-page")]
        room: String,
        #[arg(long, default_value_t = 50)]
        messages: usize,
    },
    /// Writes `<out>.json` and `<out>.md` from the results in `work`.
    Report {
        /// Directory holding `<server>-<scenario>.json`, `page.json`, `wasm.json`.
        #[arg(long)]
        work: PathBuf,
        /// Output path without extension (e.g. bench/results/2025-01-01).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, value_enum)]
    kind: Kind,
    #[arg(long)]
    addr: SocketAddr,
    /// The server's pid (CPU and RSS from /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Scenario name, stored in the report.
    #[arg(long)]
    label: String,
    #[arg(long)]
    rooms: usize,
    #[arg(long)]
    clients_per_room: usize,
    #[arg(long, default_value_t = 0)]
    senders_per_room: usize,
    /// Messages per second per sender, one value per step.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    rates: Vec<f64>,
    /// Seconds per step.
    #[arg(long, default_value_t = 3.0)]
    step_secs: f64,
    /// A first step at the first rate, reported apart as "warmup".
    #[arg(long, default_value_t = 0.0)]
    warmup_secs: f64,
    /// Ramp: stop raising the rate once a step's p99 passes this.
    #[arg(long)]
    stop_p99_ms: Option<f64>,
    /// Ramp: stop once delivered/s grows by less than this factor (e.g. 1.05).
    #[arg(long)]
    stop_growth: Option<f64>,
    #[arg(long, default_value_t = 3.0)]
    drain_secs: f64,
    /// Seconds to wait after everyone joined before measuring (memory settles).
    #[arg(long, default_value_t = 0.5)]
    settle_secs: f64,
    /// Connect from 127.0.0.<first>.. this many addresses.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    #[arg(long, default_value_t = 2)]
    first_source: u8,
    #[arg(long, default_value = "r")]
    room_prefix: String,
    /// Session cache for the project (one cookie per line; one guest per
    /// client, signed in as needed).
    #[arg(long)]
    sessions: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Where to write the JSON report (stdout if absent).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(*args),
        Command::PreparePage {
            addr,
            room,
            messages,
        } => local(async move {
            let cookie = prepare::sessions(addr, 1, None).await?.remove(0);
            loadgen::http::create_room(addr, &cookie, &room).await?;
            let room_id = loadgen::http::resolve_room(addr, &cookie, &room).await?;
            // The creator is a member; a room made by an earlier run is
            // joined (posting needs membership, and joins are idempotent).
            loadgen::http::join_room(addr, &cookie, room_id).await?;
            prepare::history(addr, &cookie, room_id, messages).await?;
            // The room's page by id: any slug opens it (the name is one here).
            println!("{cookie}\n/r/{room_id}/{room}");
            Ok(())
        }),
        Command::Report { work, out } => loadgen::report::write(&work, &out),
    }
}

/// Runs a future on a current-thread runtime with a `LocalSet`.
fn local<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&rt, fut)
}

fn run(args: RunArgs) -> Result<()> {
    let clients = args.rooms * args.clients_per_room;
    // The project: one guest per client (protocol v2 fans out per user),
    // each a member of its client's room before connecting.
    let (sessions, room_ids) = match args.kind {
        Kind::Project => local(async {
            let sessions = prepare::sessions(args.addr, clients.max(1), args.sessions.as_deref())
                .await
                .context("signing in guests")?;
            // Each room is created by its first client's user (a creator is
            // a member: one creator for all rooms would be in all of them).
            let creators: Vec<String> = (0..args.rooms)
                .map(|r| sessions[r * args.clients_per_room].clone())
                .collect();
            let room_ids = prepare::rooms(args.addr, &creators, &args.room_prefix)
                .await
                .context("creating rooms")?;
            prepare::memberships(args.addr, &sessions, &room_ids, args.clients_per_room)
                .await
                .context("joining rooms")?;
            Ok((sessions, room_ids))
        })?,
        _ => (Vec::new(), Vec::new()),
    };
    let mut steps = Vec::new();
    if args.warmup_secs > 0.0 {
        steps.push(Step {
            label: "warmup".into(),
            rate: args.rates[0],
            secs: args.warmup_secs,
        });
    }
    let receivers = args.clients_per_room as f64 * (args.rooms * args.senders_per_room) as f64;
    for &rate in &args.rates {
        steps.push(Step {
            label: format!("{:.0}/s", rate * receivers),
            rate,
            secs: args.step_secs,
        });
    }
    let cfg = engine::Config {
        kind: args.kind,
        addr: args.addr,
        rooms: args.rooms,
        clients_per_room: args.clients_per_room,
        senders_per_room: args.senders_per_room,
        steps,
        stop_p99_us: args.stop_p99_ms.map(|ms| (ms * 1000.0) as u64),
        stop_growth: args.stop_growth,
        drain: Duration::from_secs_f64(args.drain_secs),
        settle: Duration::from_secs_f64(args.settle_secs),
        server_pid: args.server_pid,
        sources: (0..args.sources)
            .map(|i| Ipv4Addr::new(127, 0, 0, args.first_source.saturating_add(i)))
            .collect(),
        room_prefix: args.room_prefix.clone(),
        room_ids,
        sessions,
        connect_concurrency: args.connect_concurrency,
    };
    let report = engine::run(cfg)?;
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "label": args.label,
        "report": report,
    }))?;
    match &args.out {
        Some(path) => std::fs::write(path, json + "\n")
            .with_context(|| format!("write {}", path.display()))?,
        None => println!("{json}"),
    }
    let t = &report.totals;
    eprintln!(
        "{} {}: {}/{} connected, sent {}, delivered {}/{}, lost {}, dup {}, p50 {} µs, p99 {} µs{}",
        args.kind.name(),
        args.label,
        report.connected,
        report.clients,
        t.sent,
        t.delivered,
        t.expected,
        t.lost,
        t.duplicated,
        t.latency.p50_us,
        t.latency.p99_us,
        report
            .steps
            .iter()
            .map(|s| format!(
                "\n  {:>10} {:>10.0}/s p99 {:>7} µs server {:.2} µs/dlv ({:.0}% busy) loadgen {:.2} µs/dlv ({:.0}% busy)",
                s.label,
                s.delivered_per_s,
                s.latency.p99_us,
                s.server_cpu_us_per_delivery,
                s.server_busy * 100.0,
                s.loadgen_cpu_us_per_delivery,
                s.loadgen_busy * 100.0
            ))
            .collect::<String>()
    );
    Ok(())
}
