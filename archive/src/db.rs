// SPDX-License-Identifier: MIT OR Apache-2.0
//! The read-side database connection shared by the HTTP handlers, kept up by its own task.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_postgres::Client;

use crate::status::log;
use crate::store;

pub struct Db {
    url: String,
    redacted: String,
    retry: Duration,
    client: RwLock<Option<Arc<Client>>>,
}

impl Db {
    pub fn new(url: &str, redacted: String, retry: Duration) -> Arc<Db> {
        Arc::new(Db {
            url: url.to_string(),
            redacted,
            retry,
            client: RwLock::new(None),
        })
    }

    /// The connection, when it is up.
    pub fn get(&self) -> Option<Arc<Client>> {
        let c = self
            .client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        c.filter(|c| !c.is_closed())
    }

    /// Keeps the connection up: attempting / connected / failed, will retry in Ns.
    pub async fn run(self: Arc<Self>) {
        loop {
            if self.get().is_some() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            log(format_args!(
                "database (search): attempting {}",
                self.redacted
            ));
            match store::connect(&self.url).await {
                Ok(c) => {
                    log(format_args!(
                        "database (search): connected ({})",
                        self.redacted
                    ));
                    *self.client.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(c));
                }
                Err(e) => {
                    log(format_args!(
                        "database (search): failed, will retry in {}s: {e}",
                        self.retry.as_secs()
                    ));
                    tokio::time::sleep(self.retry).await;
                }
            }
        }
    }
}
