// SPDX-License-Identifier: MIT OR Apache-2.0
//! The process-wide model registry: every element that asks for the same model file (same
//! canonical path, size and modification time) with the same execution provider and thread
//! setting gets the same [`SharedSession`], so N cameras in one process load each model once
//! instead of N times.
//!
//! `ort`'s `Session::run` takes `&mut self` (ONNX Runtime's `Run` is not documented as safe to
//! call concurrently on one session), so a shared model is a small pool of sessions: at most
//! `cores / threads` of them (one when `threads` is 0, since such a session already uses every
//! core). A run borrows an idle session or opens one more up to that bound, else waits for one to
//! come back; the pool's lock is held only to take or return a session, never during a run, and
//! each model has its own pool, so nothing serialises the whole process. The registry keeps a
//! [`Weak`] reference: the pool (and its sessions) is freed when the last element that holds it
//! stops. Pre-processing buffers and per-stream state stay in each element.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, Weak};
use std::time::SystemTime;

use ort::session::Session;
use ort::value::ValueType;

use crate::runtime::Provider;

/// What makes two requests the same model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub path: PathBuf,
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub threads: u32,
    pub provider: Provider,
}

impl Key {
    /// The key of `path` as it is on disk now (a model replaced in place is a new key).
    pub fn of(path: &Path, threads: u32, provider: Provider) -> Result<Key, String> {
        let canonical = std::fs::canonicalize(path)
            .map_err(|e| format!("cannot load ONNX model {}: {e}", path.display()))?;
        let meta = std::fs::metadata(&canonical)
            .map_err(|e| format!("cannot load ONNX model {}: {e}", path.display()))?;
        Ok(Key {
            path: canonical,
            len: meta.len(),
            modified: meta.modified().ok(),
            threads,
            provider,
        })
    }
}

struct Pool {
    idle: Vec<Session>,
    /// Sessions in existence (idle or lent).
    open: usize,
    /// Most sessions this model may have; lowered when opening one more fails.
    cap: usize,
}

/// A model input or output, as the session described it when it loaded.
#[derive(Debug, Clone)]
pub struct Port {
    name: String,
    dtype: ValueType,
}

impl Port {
    fn of(o: &ort::value::Outlet) -> Port {
        Port {
            name: o.name().to_string(),
            dtype: o.dtype().clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dtype(&self) -> &ValueType {
        &self.dtype
    }
}

/// One model shared by every element that uses it with the same options.
pub struct SharedSession {
    key: Key,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
    /// The provider the sessions really run on (the CPU after a fallback).
    effective: Provider,
    /// Why the sessions run on the CPU instead of the provider asked for, for every element
    /// that uses them to warn.
    fallback: Option<String>,
    pool: Mutex<Pool>,
    returned: Condvar,
}

impl std::fmt::Debug for SharedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSession")
            .field("key", &self.key)
            .field("sessions", &self.sessions())
            .finish()
    }
}

/// Puts the session back even if the closure panics.
struct Lease<'a> {
    owner: &'a SharedSession,
    session: Option<Session>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let mut pool = lock(&self.owner.pool);
            pool.idle.push(s);
            drop(pool);
            self.owner.returned.notify_one();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the data half-updated (push/pop/counters).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn default_cap(threads: u32) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 0 {
        1
    } else {
        (cores / threads as usize).max(1)
    }
}

impl SharedSession {
    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn inputs(&self) -> &[Port] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[Port] {
        &self.outputs
    }

    /// Elements holding this model now.
    pub fn users(self: &Arc<Self>) -> usize {
        Arc::strong_count(self)
    }

    /// Sessions opened for this model (the pool's size).
    pub fn sessions(&self) -> usize {
        lock(&self.pool).open
    }

    /// Runs `f` on one of the model's sessions, opening another one (up to the pool's bound)
    /// when all are busy, else waiting for one.
    pub fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> Result<R, String> {
        let mut lease = Lease {
            owner: self,
            session: Some(self.checkout()?),
        };
        let session = lease
            .session
            .as_mut()
            .ok_or_else(|| "no session".to_string())?;
        Ok(f(session))
    }

    fn checkout(&self) -> Result<Session, String> {
        let mut pool = lock(&self.pool);
        loop {
            if let Some(s) = pool.idle.pop() {
                return Ok(s);
            }
            if pool.open < pool.cap {
                pool.open += 1;
                drop(pool);
                match crate::runtime::open_session_on(
                    &self.key.path,
                    self.key.threads,
                    self.effective,
                ) {
                    Ok((s, _)) => return Ok(s),
                    Err(e) => {
                        pool = lock(&self.pool);
                        pool.open -= 1;
                        pool.cap = pool.open;
                        if pool.open == 0 {
                            return Err(e);
                        }
                    }
                }
            } else {
                pool = self.returned.wait(pool).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

static REGISTRY: LazyLock<Mutex<HashMap<Key, Weak<SharedSession>>>> =
    LazyLock::new(Default::default);

/// Models loaded in this process now (held by at least one element).
pub fn loaded() -> usize {
    lock(&REGISTRY)
        .values()
        .filter(|w| w.strong_count() > 0)
        .count()
}

/// Elements holding the model `path` with these options now (0: not loaded).
pub fn users_of(path: &Path, threads: u32, provider: Provider) -> usize {
    let Ok(key) = Key::of(path, threads, provider) else {
        return 0;
    };
    lock(&REGISTRY).get(&key).map_or(0, Weak::strong_count)
}

/// The shared model for `path` with these options, loading it when no element holds it. The
/// second value says why the model runs on the CPU instead of `provider`, when it does. The registry's lock is not held while a model loads: two
/// elements that start together may both load it, and the second one then uses the first's.
pub fn acquire(
    path: &Path,
    threads: u32,
    provider: Provider,
) -> Result<(Arc<SharedSession>, Option<String>), String> {
    let key = Key::of(path, threads, provider)?;
    // ALPR_SHARE_SESSIONS=0: every element loads its own (to measure what sharing saves).
    let share = std::env::var("ALPR_SHARE_SESSIONS").map_or(true, |v| v != "0");
    if let Some(shared) = lock(&REGISTRY)
        .get(&key)
        .filter(|_| share)
        .and_then(Weak::upgrade)
    {
        let fallback = shared.fallback.clone();
        return Ok((shared, fallback));
    }
    let (session, fallback) = crate::runtime::open_session_on(path, threads, provider)?;
    let effective = if fallback.is_some() {
        Provider::Cpu
    } else {
        provider
    };
    let fresh = Arc::new(SharedSession {
        key: key.clone(),
        inputs: session.inputs().iter().map(Port::of).collect(),
        outputs: session.outputs().iter().map(Port::of).collect(),
        effective,
        fallback: fallback.clone(),
        pool: Mutex::new(Pool {
            idle: vec![session],
            open: 1,
            cap: default_cap(threads),
        }),
        returned: Condvar::new(),
    });
    let mut registry = lock(&REGISTRY);
    registry.retain(|_, w| w.strong_count() > 0);
    if !share {
        return Ok((fresh, fallback));
    }
    if let Some(shared) = registry.get(&key).and_then(Weak::upgrade) {
        let fallback = shared.fallback.clone();
        return Ok((shared, fallback));
    }
    registry.insert(key, Arc::downgrade(&fresh));
    Ok((fresh, fallback))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Option<PathBuf> {
        crate::models::resolve(None, "plate-model", &crate::models::PLATE_MODELS).ok()
    }

    #[test]
    fn registry_shares_and_releases() {
        let Some(path) = model() else {
            panic!("no plate model: set ALPR_MODELS_DIR (scripts/setup)");
        };
        crate::runtime::ensure().expect("ONNX Runtime (ORT_DYLIB_PATH)");
        let (a, _) = acquire(&path, 1, Provider::Cpu).expect("load");
        // The same file through another spelling of its path is the same model.
        let other = path
            .parent()
            .unwrap()
            .join(".")
            .join(path.file_name().unwrap());
        let (b, _) = acquire(&other, 1, Provider::Cpu).expect("load");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.users(), 2);
        assert_eq!(users_of(&path, 1, Provider::Cpu), 2);
        // Another thread setting is another model.
        let (c, _) = acquire(&path, 2, Provider::Cpu).expect("load");
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(a.users(), 2);

        // Concurrent runs: each thread gets a session of its own (the pool grows up to its
        // bound, at least one).
        let inputs = a.with(|s| s.inputs().len()).unwrap();
        assert_eq!(inputs, 1);
        std::thread::scope(|sc| {
            for _ in 0..4 {
                let a = &a;
                sc.spawn(move || {
                    for _ in 0..3 {
                        a.with(|s| {
                            let shape = match s.inputs()[0].dtype() {
                                ort::value::ValueType::Tensor { shape, .. } => shape
                                    .iter()
                                    .map(|d| (*d).max(1) as usize)
                                    .collect::<Vec<_>>(),
                                _ => panic!("tensor input"),
                            };
                            let n: usize = shape.iter().product();
                            let data = vec![0.5f32; n];
                            let t =
                                ort::value::TensorRef::from_array_view((shape, &data[..])).unwrap();
                            s.run(ort::inputs![t]).map(|o| o.len()).unwrap()
                        })
                        .unwrap();
                    }
                });
            }
        });
        let open = a.sessions();
        assert!(open >= 1 && open <= default_cap(1), "{open} sessions");

        let key_a = a.key().clone();
        drop(a);
        assert_eq!(b.users(), 1);
        drop(b);
        drop(c);
        assert_eq!(users_of(&path, 1, Provider::Cpu), 0);
        assert!(
            lock(&REGISTRY)
                .get(&key_a)
                .is_none_or(|w| w.upgrade().is_none()),
            "released when the last user drops it"
        );
        // Loading again opens a fresh model.
        let (d, _) = acquire(&path, 1, Provider::Cpu).expect("load");
        assert_eq!(d.users(), 1);
        assert_eq!(d.sessions(), 1);
    }
}
