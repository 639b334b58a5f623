// SPDX-License-Identifier: MIT OR Apache-2.0
//! alpr-archive: Kafka consumer group -> PostgreSQL, with a search API and page.

mod api;
mod config;
mod consumer;
mod db;
mod decode;
mod query;
mod search;
mod status;
mod store;
mod web;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;

use crate::status::log;

fn main() {
    let cfg = config::Config::parse();
    if let Err(e) = cfg.validate() {
        eprintln!("alpr-archive: {e}");
        std::process::exit(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("alpr-archive: cannot start the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cfg, rt.handle().clone())) {
        eprintln!("alpr-archive: {e}");
        std::process::exit(1);
    }
}

async fn run(cfg: config::Config, handle: tokio::runtime::Handle) -> Result<(), String> {
    let db = db::Db::new(
        &cfg.database_url,
        cfg.database_redacted(),
        cfg.retry_interval,
    );
    tokio::spawn(db.clone().run());
    let state = Arc::new(api::AppState {
        db: db.clone(),
        password: cfg.password.clone(),
        crops: cfg.crops()?,
    });
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", cfg.listen))?;
    log(format_args!(
        "search API and page on http://{}/",
        cfg.listen
    ));
    tokio::spawn(async move {
        let _ = axum::serve(listener, api::router(state)).await;
    });
    if !cfg.metrics_address.is_empty() {
        match tokio::net::TcpListener::bind(&cfg.metrics_address).await {
            Ok(l) => {
                log(format_args!(
                    "metrics on http://{}/metrics",
                    cfg.metrics_address
                ));
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(|| async { status::render() }),
                );
                tokio::spawn(async move {
                    let _ = axum::serve(l, app).await;
                });
            }
            // Like the plugin's metrics server: a busy port is a warning, not a failure.
            Err(e) => log(format_args!(
                "metrics: cannot listen on {}: {e} (no /metrics)",
                cfg.metrics_address
            )),
        }
    }
    if cfg.retention_days > 0 {
        tokio::spawn(retention(db.clone(), cfg.retention_days));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (cfg, stop) = (cfg.clone(), stop.clone());
        std::thread::Builder::new()
            .name("alpr-archive-consumer".into())
            .spawn(move || consumer::run(cfg, handle, stop))
            .map_err(|e| format!("cannot start the consumer thread: {e}"))?
    };
    shutdown_signal().await;
    log("stopping");
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || consumer.join()).await;
    Ok(())
}

/// Plain-PostgreSQL retention: delete old events every hour.
async fn retention(db: Arc<db::Db>, days: u32) {
    loop {
        // Until the database is up (and its tables exist), look again every minute.
        let mut wait = Duration::from_secs(60);
        if let Some(c) = db.get() {
            match store::delete_older_than(&c, days).await {
                Ok(n) => {
                    wait = Duration::from_secs(3600);
                    if n > 0 {
                        log(format_args!(
                            "retention: deleted {n} events older than {days} days"
                        ));
                    }
                }
                Err(e) => log(format_args!("retention: {}", store::error_text(&e))),
            }
        }
        tokio::time::sleep(wait).await;
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}
