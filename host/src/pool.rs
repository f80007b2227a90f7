//! The instance pool of one function of one loaded app version.
//!
//! Warm instances are kept in a LIFO stack and reused across executions
//! (guest globals survive, as in a warm container). A semaphore bounds the
//! executions in progress to `max_instances`; since a new instance is only
//! created when none is idle, the instances alive never exceed that bound.
//! An instance whose execution failed inside the guest (trap, timeout,
//! memory limit) is dropped, never reused: a trap poisons the whole store.

use crate::bindings::{FunctionGuest, FunctionIndices, LifecycleGuest, LifecycleIndices, RawSpec};
use crate::compile::one_line;
use crate::error::Error;
use crate::platform::backoff::Backoff;
use crate::sandbox::{Sandbox, new_store};
use crate::spec::Settings;
use crate::spec::human;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};

/// What every pool of one loaded version shares: the pre-linked component
/// and where its exports are.
pub(crate) struct Prepared {
    /// Where background work runs (see [`Prepared::spawn`]).
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<Sandbox>,
    pub(crate) function: Option<FunctionIndices>,
    pub(crate) lifecycle: Option<LifecycleIndices>,
    /// What the app needs (its secrets), read with `describe`.
    pub(crate) needs: Option<crate::bindings::NeedsIndices>,
    pub(crate) proxy: Option<ProxyIndices>,
    /// Where the app may send HTTP requests.
    pub(crate) outbound: crate::sandbox::Outbound,
    /// Where the app's key-value state is.
    pub(crate) kv: crate::kv::Access,
    /// The secret environment, masked in captured logs.
    pub(crate) secrets: crate::SecretEnv,
    /// Directories the instances see, read-only.
    pub(crate) mounts: Vec<crate::Mount>,
    /// Whether to call `enter` on new instances (the guest said it has one).
    pub(crate) run_enter: bool,
    /// Whether to call `exit` before dropping a healthy instance.
    pub(crate) run_exit: bool,
    pub(crate) memory_limit: usize,
    pub(crate) log_limit: usize,
    /// Limit of `enter` and `exit`.
    pub(crate) hook_timeout: Duration,
    /// The host's pools, whose idle instances make room when its slots
    /// run out.
    pub(crate) reclaimer: Arc<Reclaimer>,
}

/// Most idle instances reclaimed in one pass when the host has no slot
/// left for a new instance. A pass takes the oldest eighth of the idle
/// instances (at least one): it looks at every pool, so taking several at
/// once keeps passes rare in a burst (10,000 schedules firing together
/// against 1,000 slots), while a host that is merely full loses few warm
/// instances.
const RECLAIM_BATCH: usize = 256;

/// How many times a new instance is tried again after reclaiming room.
const RECLAIM_TRIES: u32 = 3;

/// Every pool of a host, so that when the pooling allocator has no free
/// slot, warm instances idle in other pools (the least recently used
/// first) are dropped to make room rather than failing the execution.
/// Functions that run rarely (most schedules) would otherwise hold slots
/// for their whole idle timeout.
///
/// It also holds the linear memory of all warm instances within the
/// host's budget (`HostConfig::warm_memory`): past it, the least recently
/// used are dropped, so a host full of warm interpreters does not run the
/// machine out of memory.
#[derive(Default)]
pub(crate) struct Reclaimer {
    pools: Mutex<Vec<Weak<Pool>>>,
    /// When a pass last found nothing to reclaim: instances waiting for a
    /// busy host do not each look at every pool again (see
    /// [`RECLAIM_QUIET`]).
    found_none: Mutex<Option<Instant>>,
    /// Linear memory of the warm (idle) instances of all pools.
    warm_bytes: AtomicUsize,
    /// Most `warm_bytes` allowed; `None`: no limit.
    warm_budget: Option<usize>,
}

/// After a pass that found no idle instance, how long further passes are
/// skipped: a host whose slots are all busy, with many instances waiting,
/// then looks at its pools at most this often.
const RECLAIM_QUIET: Duration = Duration::from_millis(5);

impl Reclaimer {
    /// A reclaimer that keeps warm instances within `warm_budget` bytes of
    /// linear memory (`None`: no limit).
    pub(crate) fn new(warm_budget: Option<usize>) -> Reclaimer {
        Reclaimer {
            warm_budget,
            ..Reclaimer::default()
        }
    }

    /// Counts `bytes` of an instance about to go idle, before any other
    /// thread can take it (its `left_idle` then never comes first, which
    /// would wrap the count below zero); returns the new total.
    fn going_idle(&self, bytes: usize) -> usize {
        self.warm_bytes
            .fetch_add(bytes, Ordering::AcqRel)
            .saturating_add(bytes)
    }

    /// Past the budget (`total` warm bytes, as `going_idle` returned),
    /// drops the least recently used idle instances down to nine tenths of
    /// it (so that a host at its budget does not trim on every call).
    fn keep_within_budget(&self, total: usize) {
        if let Some(budget) = self.warm_budget
            && total > budget
        {
            self.trim(budget - budget / 10);
        }
    }

    /// Counts `bytes` of instances that stopped being idle.
    fn left_idle(&self, bytes: usize) {
        self.warm_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// The pools still alive.
    fn live_pools(&self) -> Vec<Arc<Pool>> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.retain(|p| p.strong_count() > 0);
        pools.iter().filter_map(Weak::upgrade).collect()
    }

    /// Drops the least recently used idle instances across all pools
    /// (keeping each pool's `min_warm`) until warm instances hold at most
    /// `target` bytes.
    fn trim(&self, target: usize) {
        let (live, mut candidates) =
            self.idle_instances(|_, inst| (inst.last_used, inst.memory_size()));
        candidates.sort_unstable_by_key(|&((last_used, _), _)| last_used);
        let mut excess = self
            .warm_bytes
            .load(Ordering::Acquire)
            .saturating_sub(target);
        let chosen = candidates.into_iter().take_while(|&((_, bytes), _)| {
            let take = excess > 0;
            excess = excess.saturating_sub(bytes);
            take
        });
        drop_chosen(&live, chosen.map(|(_, i)| i));
    }

    /// Every idle instance that may be dropped (each pool keeps its
    /// `min_warm`) as `key(pool, instance)` with the index of its pool
    /// among the live pools, which are returned too.
    fn idle_instances<K>(
        &self,
        key: impl Fn(&Pool, &Instance) -> K,
    ) -> (Vec<Arc<Pool>>, Vec<(K, usize)>) {
        let live = self.live_pools();
        let mut found = Vec::new();
        for (i, pool) in live.iter().enumerate() {
            let idle = pool.idle();
            found.extend(
                idle[..pool.removable(&idle)]
                    .iter()
                    .map(|inst| (key(pool, inst), i)),
            );
        }
        (live, found)
    }

    /// Makes `pool`'s idle instances reclaimable.
    pub(crate) fn register(&self, pool: &Arc<Pool>) {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.push(Arc::downgrade(pool));
    }

    /// Drops the least recently used idle instances across all pools (see
    /// [`RECLAIM_BATCH`]), keeping each pool's `min_warm`; returns how many
    /// it dropped.
    ///
    /// Instances of `module` (the component about to be instantiated) go
    /// first: the slot one frees still holds that component's memory image,
    /// so the new instance needs no new mapping of it (`map_image_at`).
    pub(crate) fn reclaim(&self, module: &Prepared) -> usize {
        let found_none = || {
            self.found_none
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if found_none().is_some_and(|at| at.elapsed() < RECLAIM_QUIET) {
            return 0;
        }
        // Every reclaimable idle instance: whether it is of another
        // component, and its last use.
        let (live, mut candidates) = self
            .idle_instances(|pool, inst| (!std::ptr::eq(&*pool.prepared, module), inst.last_used));
        if candidates.is_empty() {
            *found_none() = Some(Instant::now());
            return 0;
        }
        let batch = (candidates.len() / 8).clamp(1, RECLAIM_BATCH);
        if candidates.len() > batch {
            candidates.select_nth_unstable(batch);
            candidates.truncate(batch);
        }
        drop_chosen(&live, candidates.into_iter().map(|(_, i)| i))
    }
}

/// Drops from each of `pools` as many of its oldest idle instances as
/// `chosen` names its index; returns how many it dropped.
fn drop_chosen(pools: &[Arc<Pool>], chosen: impl Iterator<Item = usize>) -> usize {
    let mut per_pool = vec![0usize; pools.len()];
    for i in chosen {
        per_pool[i] += 1;
    }
    pools
        .iter()
        .zip(per_pool)
        .filter(|(_, count)| *count > 0)
        .map(|(pool, count)| pool.drop_oldest(|_| count))
        .sum()
}

/// A live instance and the handles of its exports.
pub(crate) struct Instance {
    pub(crate) store: Store<Sandbox>,
    pub(crate) function: Option<FunctionGuest>,
    pub(crate) proxy: Option<Proxy>,
    lifecycle: Option<LifecycleGuest>,
    needs: Option<crate::bindings::NeedsGuest>,
    served: u32,
    last_used: Instant,
    _live: Option<LiveGuard>,
}

impl Instance {
    /// Arms the limits for one execution.
    pub(crate) fn begin(&mut self, timeout: Duration) {
        let data = self.store.data_mut();
        data.deadline = Instant::now() + timeout;
        data.memory.hit = false;
        self.store.set_epoch_deadline(1);
    }

    /// Whether the last execution was stopped by the memory limit.
    pub(crate) fn hit_memory_limit(&self) -> bool {
        self.store.data().memory.hit
    }

    /// Bytes of linear memory in use (its peak so far).
    pub(crate) fn memory_size(&self) -> usize {
        self.store.data().memory.size
    }

    /// The logs captured since the last take.
    pub(crate) fn take_logs(&mut self) -> String {
        self.store.data().logs.take()
    }
}

/// Creates a new instance: store, instantiation, export handles. When the
/// host has no slot left, the least recently used idle instances of the
/// host make room; when every slot is busy, it waits for one to free, up
/// to `wait`.
async fn instantiate(
    prepared: &Prepared,
    env: &[(String, String)],
    function: &str,
    wait: Duration,
) -> Result<Instance, Error> {
    let deadline = Instant::now() + wait;
    let (mut reclaims, mut waits) = (0, 0);
    loop {
        match instantiate_once(prepared, env, function).await {
            Err(Error::HostAtCapacity(message)) => {
                if reclaims < RECLAIM_TRIES && prepared.reclaimer.reclaim(prepared) > 0 {
                    reclaims += 1;
                    tokio::task::yield_now().await;
                } else if Instant::now() < deadline {
                    waits += 1;
                    let pause = Backoff::HOST_FULL.delay(waits);
                    tokio::time::sleep(pause.min(deadline - Instant::now())).await;
                    reclaims = 0;
                } else {
                    return Err(Error::HostAtCapacity(message));
                }
            }
            result => return result,
        }
    }
}

/// One try of [`instantiate`].
async fn instantiate_once(
    prepared: &Prepared,
    env: &[(String, String)],
    function: &str,
) -> Result<Instance, Error> {
    let mut store = new_store(
        &prepared.engine,
        env,
        &prepared.outbound,
        &prepared.kv,
        &prepared.secrets,
        &prepared.mounts,
        prepared.memory_limit,
        prepared.log_limit,
    )
    .map_err(|message| Error::Instantiate {
        function: function.to_string(),
        message,
    })?;
    store.data_mut().deadline = Instant::now() + prepared.hook_timeout;
    let error = |e: wasmtime::Error| {
        if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            Error::HostAtCapacity(one_line(&format!("{e:#}")))
        } else {
            Error::Instantiate {
                function: function.to_string(),
                message: one_line(&format!("{e:#}")),
            }
        }
    };
    let instance = prepared
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(error)?;
    let function = match &prepared.function {
        Some(i) => Some(i.load(&mut store, &instance).map_err(error)?),
        None => None,
    };
    let lifecycle = match &prepared.lifecycle {
        Some(i) => Some(i.load(&mut store, &instance).map_err(error)?),
        None => None,
    };
    let proxy = match &prepared.proxy {
        Some(i) => Some(i.load(&mut store, &instance).map_err(error)?),
        None => None,
    };
    let needs = match &prepared.needs {
        Some(i) => Some(i.load(&mut store, &instance).map_err(error)?),
        None => None,
    };
    Ok(Instance {
        store,
        function,
        proxy,
        lifecycle,
        needs,
        served: 0,
        last_used: Instant::now(),
        _live: None,
    })
}

/// Runs the `enter` hook of a new instance.
async fn enter(instance: &mut Instance, timeout: Duration) -> Result<(), String> {
    if instance.lifecycle.is_none() {
        return Ok(());
    }
    instance.begin(timeout);
    let Instance {
        store, lifecycle, ..
    } = &mut *instance;
    let Some(hooks) = lifecycle.as_ref() else {
        return Ok(());
    };
    let entered = tokio::time::timeout(timeout, hooks.call_enter(&mut *store)).await;
    let logs = instance.store.data().logs.take();
    if !logs.is_empty() {
        tracing::info!(target: "modal::guest", "enter: {}", logs.trim_end());
    }
    match entered {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(message))) => Err(format!("`enter` failed: {message}")),
        Ok(Err(trap)) => Err(format!(
            "`enter` trapped: {}",
            one_line(&format!("{trap:#}"))
        )),
        Err(_) => Err("`enter` timed out".to_string()),
    }
}

/// Calls `describe` (and `needs.secrets` when the guest has it) in a fresh
/// instance that is dropped afterwards.
pub(crate) async fn describe(
    prepared: &Prepared,
    env: &[(String, String)],
) -> Result<(RawSpec, Vec<String>), String> {
    let mut instance = instantiate(prepared, env, "describe", prepared.hook_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let timeout = prepared.hook_timeout;
    instance.begin(timeout);
    let Instance {
        store, function, ..
    } = &mut instance;
    let Some(guest) = function.as_ref() else {
        return Err("the component has no `describe` export".into());
    };
    let result = tokio::time::timeout(timeout, guest.call_describe(&mut *store)).await;
    let result = match (result, instance.needs.as_ref()) {
        (Ok(Ok(spec)), Some(needs)) => {
            let secrets =
                tokio::time::timeout(timeout, needs.call_secrets(&mut instance.store)).await;
            match secrets {
                Ok(Ok(secrets)) => Ok(Ok((spec, secrets))),
                Ok(Err(trap)) => Ok(Err(trap)),
                Err(elapsed) => Err(elapsed),
            }
        }
        (result, _) => result.map(|r| r.map(|spec| (spec, Vec::new()))),
    };
    match result {
        Ok(Ok(described)) => Ok(described),
        Ok(Err(trap)) => {
            let error = crate::trap::classify(trap, &instance, "describe", timeout);
            let logs = instance.take_logs();
            Err(crate::trap::refine(error, &logs).to_string())
        }
        Err(_) => Err(format!("it did not return within {}", human(timeout))),
    }
}

/// Counts live instances; dropping an instance wakes whoever waits for a
/// pool to drain.
pub(crate) struct LiveGuard {
    counters: Arc<Counters>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.counters.live.fetch_sub(1, Ordering::AcqRel);
        self.counters.changed.notify_waiters();
    }
}

#[derive(Default)]
struct Counters {
    live: AtomicUsize,
    busy: AtomicUsize,
    created: AtomicU64,
    discarded: AtomicU64,
    changed: Notify,
}

/// Point-in-time figures of one function's pool.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PoolStats {
    /// The function.
    pub function: String,
    /// Instances alive (idle or busy).
    pub live: usize,
    /// Instances running an execution.
    pub busy: usize,
    /// Instances idle and warm.
    pub idle: usize,
    /// Instances created since the version was loaded.
    pub created: u64,
    /// Instances dropped after a failure inside the guest.
    pub discarded: u64,
}

/// The pool of one function.
pub(crate) struct Pool {
    /// Whether the function is a web function (served, not called).
    pub(crate) web: bool,
    /// The function's name as the value of the header that tells a web
    /// guest which function a request is for; `None` when the app has a
    /// single web function (the guest needs no header then).
    pub(crate) header: Option<http::HeaderValue>,
    pub(crate) prepared: Arc<Prepared>,
    function: String,
    env: Vec<(String, String)>,
    pub(crate) settings: Settings,
    queue_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<Vec<Instance>>,
    permits: Arc<Semaphore>,
    counters: Arc<Counters>,
    closed: AtomicBool,
    /// Woken when the pool closes.
    closing: Notify,
}

/// An instance checked out of a pool for one execution. Dropping a lease
/// without [`Pool::checkin`] (e.g. a cancelled call) discards the instance.
pub(crate) struct Lease {
    instance: Option<Instance>,
    /// Whether the instance was created for this execution.
    pub(crate) fresh: bool,
    counters: Arc<Counters>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// The leased instance.
    pub(crate) fn instance(&mut self) -> &mut Instance {
        // Only `Pool::checkin` takes the instance out, consuming the lease.
        self.instance
            .as_mut()
            .expect("a lease holds its instance until check-in")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.instance.take().is_some() {
            // Never checked in: the execution was cancelled mid-way, so the
            // store may be in any state. The instance is dropped with it.
            self.counters.busy.fetch_sub(1, Ordering::AcqRel);
            self.counters.discarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Prepared {
    /// Runs `task` on the host's runtime (the one it was created on), so
    /// that it outlives the thread that asked for it, e.g. a connection
    /// thread of the server; on the current runtime when there is none.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match (self.runtime.clone()).or_else(|| tokio::runtime::Handle::try_current().ok()) {
            Some(runtime) => drop(runtime.spawn(task)),
            None => tracing::warn!("no async runtime to run background work on; it is dropped"),
        }
    }
}

impl Pool {
    pub(crate) fn new(
        web: bool,
        prepared: Arc<Prepared>,
        function: String,
        env: Vec<(String, String)>,
        settings: Settings,
        queue_timeout: Duration,
        idle_timeout: Duration,
    ) -> Pool {
        let permits = Arc::new(Semaphore::new(settings.max_instances as usize));
        // Function names are identifiers, always valid header values.
        let header = http::HeaderValue::from_str(&function).ok();
        Pool {
            web,
            header,
            prepared,
            function,
            env,
            settings,
            queue_timeout,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
            permits,
            counters: Arc::default(),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates an instance, waiting up to `wait` for a slot of the host.
    async fn create(&self, wait: Duration) -> Result<Instance, Error> {
        self.counters.live.fetch_add(1, Ordering::AcqRel);
        let guard = LiveGuard {
            counters: self.counters.clone(),
        };
        let failed = |message| Error::Instantiate {
            function: self.function.clone(),
            message,
        };
        let mut instance = instantiate(&self.prepared, &self.env, &self.function, wait).await?;
        instance._live = Some(guard);
        if self.prepared.run_enter {
            enter(&mut instance, self.prepared.hook_timeout)
                .await
                .map_err(failed)?;
        }
        self.counters.created.fetch_add(1, Ordering::Relaxed);
        Ok(instance)
    }

    /// Takes a warm instance, or creates one; waits up to the queue
    /// timeout when `max_instances` executions are already running.
    pub(crate) async fn checkout(&self) -> Result<Lease, Error> {
        self.checkout_within(Some(self.queue_timeout), false).await
    }

    /// [`checkout`](Self::checkout) waiting up to `wait` for a free
    /// instance, or as long as it takes with `None` (an accepted spawned
    /// call is never rejected for load). `wait` covers both the wait for
    /// one of the function's `max_instances` and, for a new instance, the
    /// wait for a slot of the host (the queue timeout with `None`). A
    /// `nested` checkout (a call from an execution of this version) is
    /// served even once the pool closes: the work of an execution in
    /// flight finishes on its own version.
    pub(crate) async fn checkout_within(
        &self,
        wait: Option<Duration>,
        nested: bool,
    ) -> Result<Lease, Error> {
        let started = Instant::now();
        let shutting_down = || Error::ShuttingDown(self.function.clone());
        let closed = || !nested && self.closed.load(Ordering::Acquire);
        if closed() {
            return Err(shutting_down());
        }
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return Err(shutting_down()),
            Err(TryAcquireError::NoPermits) => {
                let acquire = self.permits.clone().acquire_owned();
                // A closing pool wakes its waiters, which take the live
                // version instead.
                let closing = async {
                    if nested {
                        return std::future::pending().await;
                    }
                    let notified = self.closing.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if !closed() {
                        notified.await;
                    }
                };
                let acquired = async {
                    tokio::select! {
                        p = acquire => p.ok(),
                        () = closing => None,
                    }
                };
                let waited = match wait {
                    Some(limit) => tokio::time::timeout(limit, acquired).await,
                    None => Ok(acquired.await),
                };
                match waited {
                    Ok(Some(p)) => p,
                    Ok(None) => return Err(shutting_down()),
                    Err(_) => {
                        return Err(Error::Overloaded {
                            function: self.function.clone(),
                            max: self.settings.max_instances,
                            waited: wait.unwrap_or(self.queue_timeout),
                        });
                    }
                }
            }
        };
        if closed() {
            return Err(shutting_down());
        }
        self.counters.busy.fetch_add(1, Ordering::AcqRel);
        let slot_wait = wait.map_or(self.queue_timeout, |limit| {
            limit.saturating_sub(started.elapsed())
        });
        let warm = self.idle().pop();
        if let Some(instance) = &warm {
            self.prepared.reclaimer.left_idle(instance.memory_size());
        }
        let (instance, fresh) = match warm {
            Some(i) => (i, false),
            // Boxed: creating an instance is the cold path, and its large
            // future would otherwise grow every caller's state.
            None => match Box::pin(self.create(slot_wait)).await {
                Ok(i) => (i, true),
                Err(e) => {
                    self.counters.busy.fetch_sub(1, Ordering::AcqRel);
                    return Err(e);
                }
            },
        };
        Ok(Lease {
            instance: Some(instance),
            fresh,
            counters: self.counters.clone(),
            _permit: permit,
        })
    }

    /// Returns an instance after an execution. A `healthy` instance goes
    /// back to the warm stack unless it has served its
    /// `max_requests_per_instance` or the pool is closing; otherwise it is
    /// dropped.
    pub(crate) fn checkin(&self, mut lease: Lease, healthy: bool) {
        let Some(mut instance) = lease.instance.take() else {
            return;
        };
        self.counters.busy.fetch_sub(1, Ordering::AcqRel);
        if !healthy {
            self.counters.discarded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        instance.served += 1;
        instance.last_used = Instant::now();
        let used_up = self
            .settings
            .max_requests_per_instance
            .is_some_and(|max| instance.served >= max);
        if used_up || self.closed.load(Ordering::Acquire) {
            self.retire(instance);
        } else {
            self.push_idle(instance);
        }
    }

    /// Drops a healthy instance after its `exit` hook, off the caller's path.
    fn retire(&self, instance: Instance) {
        if !self.prepared.run_exit || instance.lifecycle.is_none() {
            return;
        }
        let timeout = self.prepared.hook_timeout;
        self.prepared.spawn(run_exit(instance, timeout));
    }

    /// Creates instances until `min_warm` are alive.
    pub(crate) async fn prewarm(&self) -> Result<(), Error> {
        self.warm(self.settings.min_warm).await.map(drop)
    }

    /// Creates idle instances until `count` (at most `max_instances`) are
    /// alive; returns how many it created.
    pub(crate) async fn warm(&self, count: u32) -> Result<u32, Error> {
        let target = count.min(self.settings.max_instances) as usize;
        let mut started = 0;
        while self.counters.live.load(Ordering::Acquire) < target
            && !self.closed.load(Ordering::Acquire)
        {
            let instance = self.create(self.queue_timeout).await?;
            self.push_idle(instance);
            started += 1;
        }
        Ok(started)
    }

    /// Drops warm instances idle for longer than the idle timeout, keeping
    /// `min_warm` alive.
    pub(crate) fn scale_down(&self, now: Instant) {
        self.drop_oldest(|idle| {
            idle[..self.removable(idle)]
                .iter()
                .take_while(|i| now.duration_since(i.last_used) >= self.idle_timeout)
                .count()
        });
    }

    /// How many of the idle instances `idle` (this pool's stack) may be
    /// dropped: all but those that keep `min_warm` alive.
    fn removable(&self, idle: &[Instance]) -> usize {
        let keep = self.settings.min_warm as usize;
        let live = self.counters.live.load(Ordering::Acquire);
        live.saturating_sub(keep).min(idle.len())
    }

    /// Puts an instance on the warm stack, counted against the host's
    /// budget of warm memory.
    fn push_idle(&self, instance: Instance) {
        let reclaimer = &self.prepared.reclaimer;
        let total = reclaimer.going_idle(instance.memory_size());
        self.idle().push(instance);
        reclaimer.keep_within_budget(total);
    }

    /// Drops the least recently used idle instances, as many as `count`
    /// says of the idle stack (ordered by last use, oldest first); returns
    /// how many it dropped.
    fn drop_oldest(&self, count: impl FnOnce(&[Instance]) -> usize) -> usize {
        let taken: Vec<Instance> = {
            let mut idle = self.idle();
            let count = count(&idle).min(idle.len());
            idle.drain(..count).collect()
        };
        self.prepared
            .reclaimer
            .left_idle(taken.iter().map(Instance::memory_size).sum());
        let dropped = taken.len();
        for instance in taken {
            self.retire(instance);
        }
        dropped
    }

    /// Stops taking executions and drops the idle instances; busy ones are
    /// dropped as their executions finish.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_waiters();
        self.drop_oldest(<[Instance]>::len);
    }

    /// Waits until no instance of this pool is alive.
    pub(crate) async fn drained(&self) {
        loop {
            let changed = self.counters.changed.notified();
            if self.counters.live.load(Ordering::Acquire) == 0 {
                return;
            }
            changed.await;
        }
    }

    /// How long a checkout waits for a free instance by default.
    pub(crate) fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// Executions in progress.
    pub(crate) fn busy(&self) -> usize {
        self.counters.busy.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            function: self.function.clone(),
            live: self.counters.live.load(Ordering::Acquire),
            busy: self.counters.busy.load(Ordering::Acquire),
            idle: self.idle().len(),
            created: self.counters.created.load(Ordering::Relaxed),
            discarded: self.counters.discarded.load(Ordering::Relaxed),
        }
    }
}

async fn run_exit(mut instance: Instance, timeout: Duration) {
    if let Some(hooks) = instance.lifecycle.take() {
        instance.begin(timeout);
        let result = tokio::time::timeout(timeout, hooks.call_exit(&mut instance.store)).await;
        if !matches!(result, Ok(Ok(()))) {
            tracing::debug!("an instance's `exit` hook failed or timed out");
        }
    }
}
