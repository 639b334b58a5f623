// SPDX-License-Identifier: MIT OR Apache-2.0
//! Command line flags, each with an `ALPR_ARCHIVE_*` environment equivalent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gstalpr::s3sink::client::Target;
use object_store::ObjectStore;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "alpr-archive",
    version,
    about = "Archives gst-alpr plate and vehicle events from Kafka in PostgreSQL and serves a search API and page"
)]
pub struct Config {
    /// Kafka bootstrap servers (host:port[,host:port...]).
    #[arg(long, env = "ALPR_ARCHIVE_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Schema Registry URL (credentials may be given as https://key:secret@host).
    #[arg(
        long,
        env = "ALPR_ARCHIVE_SCHEMA_REGISTRY",
        default_value = "http://127.0.0.1:8081"
    )]
    pub schema_registry: String,
    /// PostgreSQL connection URL (postgres://user:password@host:port/db).
    #[arg(
        long,
        env = "ALPR_ARCHIVE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Address of the search API and web page. A non-loopback address needs --password.
    #[arg(long, env = "ALPR_ARCHIVE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Password (HTTP basic auth, any user name) or bearer token of the API and page.
    #[arg(long, env = "ALPR_ARCHIVE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Kafka consumer group: instances with the same group share the partitions.
    #[arg(long, env = "ALPR_ARCHIVE_GROUP_ID", default_value = "alpr-archive")]
    pub group_id: String,
    /// A stable name of this instance in the group (Kafka static membership, e.g. the pod name
    /// of a StatefulSet). A restarted instance with the same name takes its partitions back at
    /// once instead of waiting for the group to notice the old one is gone. Empty: dynamic.
    #[arg(long, env = "ALPR_ARCHIVE_INSTANCE_ID", default_value = "")]
    pub instance_id: String,
    /// Topic of the plate events.
    #[arg(
        long,
        env = "ALPR_ARCHIVE_PLATES_TOPIC",
        default_value = "alpr.events.plates"
    )]
    pub plates_topic: String,
    /// Topic of the vehicle-track events.
    #[arg(
        long,
        env = "ALPR_ARCHIVE_VEHICLES_TOPIC",
        default_value = "alpr.events.vehicles"
    )]
    pub vehicles_topic: String,
    /// Wait between connection attempts to each service, e.g. 30s, 500ms, 2m.
    #[arg(long, env = "ALPR_ARCHIVE_RETRY_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub retry_interval: Duration,
    /// Delete events older than this many days (0 = keep forever).
    #[arg(long, env = "ALPR_ARCHIVE_RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u32,
    /// Local folder of the crop images (the s3sink `location`): served at /images/{key}.
    #[arg(long, env = "ALPR_ARCHIVE_CROPS_DIR")]
    pub crops_dir: Option<PathBuf>,
    /// Where the crop images are when not in --crops-dir: an object_store URL read and served
    /// by the archive at /images/{key} (`s3://bucket/prefix` with the AWS_* environment,
    /// `file:///dir`), or an `http(s)://` base that image_url links to (a public bucket, a CDN).
    #[arg(long, env = "ALPR_ARCHIVE_CROPS_URL")]
    pub crops_url: Option<String>,
    /// S3 / MinIO bucket of the crop images (the s3sink `bucket`), read and served by the
    /// archive at /images/{key}.
    #[arg(long, env = "ALPR_ARCHIVE_CROPS_BUCKET")]
    pub crops_bucket: Option<String>,
    /// With --crops-bucket: the S3 endpoint (MinIO: http://host:9000); AWS when not given.
    #[arg(long, env = "ALPR_ARCHIVE_CROPS_ENDPOINT")]
    pub crops_endpoint: Option<String>,
    /// With --crops-bucket: the region.
    #[arg(long, env = "ALPR_ARCHIVE_CROPS_REGION", default_value = "us-east-1")]
    pub crops_region: String,
    /// With --crops-bucket: path-style requests (http://host/bucket/key), as MinIO wants.
    #[arg(long, env = "ALPR_ARCHIVE_CROPS_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub crops_path_style: bool,
    /// With --crops-bucket: credentials (else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
    /// AWS_SESSION_TOKEN from the environment).
    #[arg(long, env = "ALPR_ARCHIVE_CROPS_ACCESS_KEY_ID", hide_env_values = true)]
    pub crops_access_key_id: Option<String>,
    #[arg(
        long,
        env = "ALPR_ARCHIVE_CROPS_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub crops_secret_access_key: Option<String>,
    /// Address of the Prometheus /metrics endpoint ("" = off).
    #[arg(
        long,
        env = "ALPR_ARCHIVE_METRICS_ADDRESS",
        default_value = "127.0.0.1:8002"
    )]
    pub metrics_address: String,
    /// Most messages written per database transaction.
    #[arg(long, env = "ALPR_ARCHIVE_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub batch_size: u32,
}

/// `30s`, `500ms`, `2m`, `1h` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a duration like 30s, 500ms, 2m"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if d.is_zero() {
        return Err(format!("`{s}`: must be more than 0"));
    }
    Ok(d)
}

impl Config {
    /// Refuses settings that cannot work or would expose plate data.
    pub fn validate(&self) -> Result<(), String> {
        gstalpr::kafkasink::validate_brokers(&self.brokers)
            .map_err(|e| format!("--brokers: {e}"))?;
        if !self.listen.ip().is_loopback() && self.password.as_deref().is_none_or(str::is_empty) {
            return Err(format!(
                "--listen {}: plate data is personal data; a non-loopback address needs \
                 --password (or ALPR_ARCHIVE_PASSWORD)",
                self.listen
            ));
        }
        let sources = [
            self.crops_dir.is_some(),
            self.crops_url.is_some(),
            self.crops_bucket.is_some(),
        ];
        if sources.iter().filter(|&&s| s).count() > 1 {
            return Err(
                "--crops-dir, --crops-url and --crops-bucket: give one of them (where the \
                 crop images are)"
                    .into(),
            );
        }
        self.crops().map(|_| ())
    }

    /// Where the crop images are read from, checked (a bad URL or bucket is a start-up error).
    pub fn crops(&self) -> Result<Crops, String> {
        if let Some(dir) = &self.crops_dir {
            return Ok(Crops::Dir(dir.clone()));
        }
        let target = if let Some(bucket) = &self.crops_bucket {
            gstalpr::s3sink::validate_bucket(bucket).map_err(|e| format!("--crops-bucket: {e}"))?;
            Target::S3 {
                bucket: bucket.clone(),
                endpoint: self.crops_endpoint.clone(),
                region: self.crops_region.clone(),
                path_style: self.crops_path_style,
                access_key_id: self.crops_access_key_id.clone(),
                secret_access_key: self.crops_secret_access_key.clone(),
                session_token: None,
                create_bucket: false,
            }
        } else if let Some(u) = &self.crops_url {
            let url = url::Url::parse(u).map_err(|e| {
                format!(
                    "--crops-url {u}: {e} (expected s3://bucket/prefix, file:///dir or an \
                     http(s):// base)"
                )
            })?;
            if matches!(url.scheme(), "http" | "https") {
                return Ok(Crops::Link(u.trim_end_matches('/').to_string()));
            }
            Target::Url(url)
        } else {
            return Ok(Crops::None);
        };
        let describe = target.describe();
        let store = target
            .build()
            .map_err(|e| format!("crop images ({describe}): {e}"))?;
        Ok(Crops::Store { store, describe })
    }

    /// The database URL without its password, for log lines.
    pub fn database_redacted(&self) -> String {
        redact_url(&self.database_url)
    }
}

/// Where the crop images named by the events are.
#[derive(Clone)]
pub enum Crops {
    None,
    /// A local folder (the s3sink `location`), served at /images/{key}.
    Dir(PathBuf),
    /// An object store (S3 / MinIO, a `file://` URL), read and served at /images/{key}.
    Store {
        store: Arc<dyn ObjectStore>,
        /// Where, without secrets, for error answers and logs.
        describe: String,
    },
    /// A public base URL: image_url links there.
    Link(String),
}

/// `scheme://user:secret@host` -> `scheme://user:*****@host`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(v) => v,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:*****@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("alpr-archive").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn public_listen_needs_a_password() {
        let c = parse(&["--listen", "0.0.0.0:8080"]);
        assert!(c.validate().unwrap_err().contains("--password"));
        let c = parse(&["--listen", "0.0.0.0:8080", "--password", "s3cret"]);
        assert!(c.validate().is_ok());
        assert!(parse(&[]).validate().is_ok());
        assert!(parse(&["--listen", "[::1]:9000"]).validate().is_ok());
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:*****@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
