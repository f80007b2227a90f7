//! Where connection threads run and which one takes a new connection:
//! one thread pinned to each CPU the process owns, each connection given
//! to the thread on the CPU its packets arrive on (unless that thread
//! already holds far more connections than another), and a short CPU
//! slice for those threads. A client and the thread that serves it then
//! share a CPU, so an answer wakes the client without an interrupt to
//! another CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where each connection thread runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Placement {
    /// The CPU of each thread when they are pinned, one each.
    cpus: Option<Vec<usize>>,
}

impl Placement {
    /// Pins `threads` threads, one per CPU, when `pin` is set and the
    /// process may run on exactly that many CPUs (with a CPU quota smaller
    /// than its CPU set, or a set larger than the threads, nothing is
    /// pinned: the kernel places them).
    pub(super) fn new(threads: usize, pin: bool) -> Placement {
        let allowed: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|core| core.id)
            .collect();
        Placement::of(threads, pin, allowed)
    }

    fn of(threads: usize, pin: bool, allowed: Vec<usize>) -> Placement {
        let cpus = (pin && threads > 1 && allowed.len() == threads).then_some(allowed);
        Placement { cpus }
    }

    /// Pins the calling thread, thread `i`, to its CPU (if pinned) and asks
    /// for the short slice; a failure is logged and costs only speed.
    pub(super) fn enter(&self, i: usize) {
        if let Some(&cpu) = self.cpus.as_ref().and_then(|cpus| cpus.get(i))
            && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
        {
            tracing::debug!("connection thread {i} could not be pinned to CPU {cpu}");
        }
        if let Err(e) = ask_for_short_slice(LANE_SLICE) {
            tracing::debug!("connection thread {i} keeps the default CPU slice: {e}");
        }
    }

    /// The thread pinned to `cpu`, if any.
    fn thread_on(&self, cpu: usize) -> Option<usize> {
        self.cpus.as_ref()?.iter().position(|&c| c == cpu)
    }
}

/// Most connections a thread may hold beyond the least busy one's (plus a
/// quarter of that one's) and still be given a connection that arrives on
/// its CPU: enough for a client's burst of connections from one CPU (wrk's
/// 16 per thread; with 4, most runs lost the locality), and a bound when
/// every connection arrives on the same CPU (a NIC with one queue, a
/// single-threaded proxy), where the threads then share them about 5 : 4.
const LOCALITY_SLACK: usize = 16;

/// Picks the thread for a new connection from the connections each holds
/// (`open`): the one on the connection's CPU (`preferred`) unless it holds
/// too many more than the least busy one, which is taken otherwise.
pub(super) fn pick(preferred: Option<usize>, open: &[Arc<AtomicUsize>]) -> usize {
    let counts: Vec<usize> = open.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    let (least, fewest) = counts
        .iter()
        .copied()
        .enumerate()
        .min_by_key(|&(_, n)| n)
        .unwrap_or((0, 0));
    match preferred.and_then(|p| counts.get(p).map(|&n| (p, n))) {
        Some((p, n)) if n <= fewest + LOCALITY_SLACK + fewest / 4 => p,
        _ => least,
    }
}

/// A connection's place in its thread's count; dropping it frees it.
pub(super) struct Seat(Option<Arc<AtomicUsize>>);

impl Seat {
    /// Counts a connection on a thread.
    pub(super) fn take(open: &Arc<AtomicUsize>) -> Seat {
        open.fetch_add(1, Ordering::Relaxed);
        Seat(Some(open.clone()))
    }

    /// A connection served outside the connection threads.
    pub(super) fn none() -> Seat {
        Seat(None)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some(open) = &self.0 {
            open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The connection thread on the CPU where `stream`'s packets arrive.
pub(super) fn preferred(placement: &Placement, stream: &tokio::net::TcpStream) -> Option<usize> {
    incoming_cpu(stream).and_then(|cpu| placement.thread_on(cpu))
}

#[cfg(target_os = "linux")]
fn incoming_cpu(stream: &tokio::net::TcpStream) -> Option<usize> {
    socket2::SockRef::from(stream).cpu_affinity().ok()
}

#[cfg(not(target_os = "linux"))]
fn incoming_cpu(_: &tokio::net::TcpStream) -> Option<usize> {
    None
}

/// The CPU slice a connection thread asks the kernel for: the least that
/// Linux (6.12 and later) grants. The scheduler picks a thread with a
/// shorter slice sooner when it wakes, so a request that arrives while the
/// CPU is busy (a deploy compiling, the records being written, or the
/// clients themselves on the same machine) waits less for its thread; in
/// return the thread gives the CPU back sooner when others wait. With wrk
/// at 32 connections on the same 2 CPUs, p99 was lower than with the
/// default slice (1.4 ms there) in 5 of 7 alternating rounds, by up to
/// 40 %; a 4 ms slice was worse than the default.
const LANE_SLICE: Duration = Duration::from_micros(100);

/// Asks the kernel for `slice` as the calling thread's CPU slice, keeping
/// its policy and nice value (older kernels accept and ignore it).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn ask_for_short_slice(slice: Duration) -> std::io::Result<()> {
    /// `struct sched_attr` of sched_setattr(2), its first version.
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let size = std::mem::size_of::<SchedAttr>() as u32;
    let mut attr = SchedAttr::default();
    // SAFETY: sched_getattr(2) writes at most `size` bytes, the size of
    // `attr`, for the calling thread (pid 0) and keeps no pointer.
    let read = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if read != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if attr.policy != libc::SCHED_OTHER as u32 {
        // A real-time or idle policy set by the operator stays as it is.
        return Ok(());
    }
    attr.size = size;
    attr.flags = 0;
    attr.runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: sched_setattr(2) reads `attr.size` bytes of `attr` for the
    // calling thread and keeps no pointer.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn ask_for_short_slice(_: Duration) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(counts: &[usize]) -> Vec<Arc<AtomicUsize>> {
        counts
            .iter()
            .map(|&n| Arc::new(AtomicUsize::new(n)))
            .collect()
    }

    #[test]
    fn a_connection_goes_to_the_thread_on_its_cpu_within_the_slack() {
        assert_eq!(pick(Some(1), &open(&[0, 0])), 1);
        assert_eq!(pick(Some(0), &open(&[16, 0])), 0);
        assert_eq!(pick(Some(0), &open(&[17, 0])), 1);
        assert_eq!(pick(Some(0), &open(&[41, 20])), 0);
        assert_eq!(pick(Some(0), &open(&[42, 20])), 1);
        assert_eq!(pick(None, &open(&[3, 1, 2])), 1);
        assert_eq!(pick(Some(7), &open(&[3, 1])), 1);
    }

    #[test]
    fn connections_all_arriving_on_one_cpu_are_still_shared() {
        let open = open(&[0, 0]);
        for _ in 0..1000 {
            open[pick(Some(0), &open)].fetch_add(1, Ordering::Relaxed);
        }
        let (a, b) = (
            open[0].load(Ordering::Relaxed),
            open[1].load(Ordering::Relaxed),
        );
        assert_eq!(a + b, 1000);
        assert!(a <= 570 && b >= 430, "{a} : {b}");
    }

    #[test]
    fn threads_are_pinned_only_when_the_process_owns_one_cpu_each() {
        assert_eq!(Placement::of(2, true, vec![4, 5]).thread_on(5), Some(1));
        assert_eq!(Placement::of(2, true, vec![4, 5]).thread_on(0), None);
        assert_eq!(Placement::of(2, true, vec![0, 1, 2, 3]).thread_on(0), None);
        assert_eq!(Placement::of(2, false, vec![0, 1]).thread_on(0), None);
        assert_eq!(Placement::of(1, true, vec![0]).thread_on(0), None);
    }
}
