//! How a command reaches the session it addresses: the machine's task, or the mailbox of the
//! task that owns the session.

use super::*;
use futures::task::AtomicWaker;
use std::cell::{Cell, RefCell};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use volley_core::engine::QueueBounds;

/// Where a session runs, as the handles of its sockets see it.
#[derive(Clone, Default)]
pub(crate) enum Route {
    /// On the machine's task.
    #[default]
    Machine,
    /// On a task of its own, reached through its mailbox.
    Owned(Arc<Mailbox>),
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Route::Machine => "Machine",
            Route::Owned(_) => "Owned",
        })
    }
}

use std::fmt;

/// The commands waiting for a session's own task, with its waker.
///
/// Pushed to from any thread; the owning task takes them all at once per wake. A push made
/// while the owner runs a step (a handler it runs inline casting to its own socket) wakes
/// nobody: the owner looks again before it waits.
///
/// Bounded as the session's own queue is: the commands that carry a packet (emits, acks, a
/// broadcast's copies) are refused once the mailbox holds `max_buffered_packets` of them
/// or `max_buffered_bytes` of their payloads (the one that crosses the byte bound is
/// taken), and the pusher applies the overflow policy ([`Refused::Full`]). The others
/// (control commands of fixed size) are always taken.
pub(crate) struct Mailbox {
    queue: Mutex<Queue>,
    /// The bounds on packets waiting: their count and their bytes.
    bounds: QueueBounds,
    waker: AtomicWaker,
    running: AtomicBool,
    /// What [`Mailbox::express`] reads and counts, side by side.
    flags: LaneFlags,
    /// The connection's outbox, once its task runs the session.
    lane: std::sync::OnceLock<Lane>,
    /// What the session exchanged: written by its task only, read for `Io::traffic`.
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
}

#[derive(Default)]
struct Queue {
    commands: VecDeque<Command>,
    /// The commands queued that carry a packet, and the bytes of those packets.
    packets: usize,
    bytes: usize,
    /// A [`Command::Overflowed`] waits: one is enough.
    overflowed: bool,
    closed: bool,
}

/// What [`Mailbox::express`] reads for each copy, and what it counts, kept together (one
/// cache line to fetch from the owner's core per copy rather than several, and none that
/// the owner writes as it counts its own sends).
#[repr(C)]
#[derive(Default)]
struct LaneFlags {
    /// Commands in the queue: changed under its lock, read without it by
    /// [`Mailbox::express`].
    waiting: AtomicUsize,
    /// The express lane is open (see [`Mailbox::set_lane`]): set by the owner at each step.
    lane_open: AtomicBool,
    /// The session's task has ended: no copy goes past it any more.
    shut: AtomicBool,
    /// The messages the express lane pushed, and their bytes.
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// Why a mailbox handed a command back.
pub(crate) enum Refused {
    /// The session's task has ended.
    Gone(Command),
    /// The mailbox holds its bound of packets: the session's overflow policy applies.
    Full(Command),
}

impl Default for Mailbox {
    fn default() -> Self {
        Mailbox::bounded(volley_core::engine::Config::default().queue_bounds())
    }
}

/// Where a broadcast's copy may go straight, skipping the owner's step: the connection's
/// outbox, open only while the session is idle with nothing queued (see
/// [`Mailbox::express`]).
struct Lane {
    outbox: Arc<crate::driver::outbox::Outbox>,
    conn: ConnId,
}

impl Mailbox {
    /// An empty mailbox holding packets within `bounds` (the session's own).
    pub(crate) fn bounded(bounds: QueueBounds) -> Self {
        Mailbox {
            queue: Mutex::default(),
            bounds,
            waker: AtomicWaker::new(),
            running: AtomicBool::new(false),
            flags: LaneFlags::default(),
            lane: std::sync::OnceLock::new(),
            packets_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `command`; handed back when the session's task has ended, or when it carries
    /// a packet and the mailbox holds its bound of them.
    // The command is handed back whole, on the rare path, for the machine to answer.
    #[allow(clippy::result_large_err)]
    pub(crate) fn push(&self, command: Command) -> Result<(), Refused> {
        {
            let mut queue = self.lock();
            if queue.closed {
                return Err(Refused::Gone(command));
            }
            if let Some(len) = command.packet_len() {
                if self.bounds.refuses(queue.packets, queue.bytes) {
                    return Err(Refused::Full(command));
                }
                queue.packets += 1;
                queue.bytes += len;
            }
            if matches!(command, Command::Overflowed) {
                if queue.overflowed {
                    return Ok(());
                }
                queue.overflowed = true;
            }
            queue.commands.push_back(command);
            self.flags
                .waiting
                .store(queue.commands.len(), Ordering::SeqCst);
        }
        if !self.running.load(Ordering::SeqCst) {
            self.waker.wake();
        }
        Ok(())
    }

    /// The next command queued. The queue's buffer is released once emptied: an idle
    /// session holds none.
    pub(crate) fn pop(&self) -> Option<Command> {
        let mut queue = self.lock();
        let command = queue.commands.pop_front();
        match &command {
            Some(Command::Overflowed) => queue.overflowed = false,
            Some(command) => {
                if let Some(len) = command.packet_len() {
                    queue.packets -= 1;
                    queue.bytes -= len;
                }
            }
            None => {}
        }
        self.flags
            .waiting
            .store(queue.commands.len(), Ordering::SeqCst);
        if queue.commands.is_empty() && queue.commands.capacity() > 0 {
            queue.commands = VecDeque::new();
        }
        command
    }

    /// Wakes the owner's task to look at the session's deadline again.
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }

    /// The owner starts (`true`) or ends a step.
    pub(crate) fn running(&self, running: bool) {
        self.running.store(running, Ordering::SeqCst);
    }

    /// Whether commands wait, registering `cx` to be woken by the next one otherwise.
    pub(crate) fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> bool {
        if !self.lock().commands.is_empty() {
            return true;
        }
        self.waker.register(cx.waker());
        !self.lock().commands.is_empty()
    }

    /// The session read a WebSocket message of `len` bytes.
    pub(crate) fn count_received(&self, len: usize) {
        self.packets_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Adds what `traffic` counted of the packets and bytes the session received and sent
    /// (a session in a slot: polling bodies and poll answers).
    pub(crate) fn count(&self, traffic: &volley_core::socketio::Traffic) {
        self.packets_in
            .fetch_add(traffic.packets_received, Ordering::Relaxed);
        self.bytes_in
            .fetch_add(traffic.bytes_received, Ordering::Relaxed);
        self.packets_out
            .fetch_add(traffic.packets_sent, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(traffic.bytes_sent, Ordering::Relaxed);
    }

    /// The session wrote a WebSocket message of `len` bytes.
    pub(crate) fn count_sent(&self, len: usize) {
        self.packets_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// What the session exchanged so far.
    pub(crate) fn traffic(&self) -> volley_core::socketio::Traffic {
        volley_core::socketio::Traffic {
            packets_received: self.packets_in.load(Ordering::Relaxed),
            bytes_received: self.bytes_in.load(Ordering::Relaxed),
            packets_sent: self.packets_out.load(Ordering::Relaxed)
                + self.flags.packets.load(Ordering::Relaxed),
            bytes_sent: self.bytes_out.load(Ordering::Relaxed)
                + self.flags.bytes.load(Ordering::Relaxed),
            ..Default::default()
        }
    }

    /// Takes no more commands; those still queued are handed back.
    pub(crate) fn close(&self) -> VecDeque<Command> {
        let mut queue = self.lock();
        queue.closed = true;
        (queue.packets, queue.bytes) = (0, 0);
        self.flags.shut.store(true, Ordering::SeqCst);
        self.flags.waiting.store(0, Ordering::SeqCst);
        std::mem::take(&mut queue.commands)
    }

    /// The session runs on the task of connection `conn`, whose outbox is `outbox`.
    pub(crate) fn attach(&self, outbox: Arc<crate::driver::outbox::Outbox>, conn: ConnId) {
        let _ = self.lane.set(Lane { outbox, conn });
    }

    /// Opens (`true`) or closes the express lane. The owner closes it as each step starts
    /// and opens it once the step's outputs are all in the outbox and its session queues
    /// nothing: a copy pushed straight into the outbox then follows everything the session
    /// sent before, and precedes what it sends next.
    pub(crate) fn set_lane(&self, open: bool) {
        self.flags.lane_open.store(open, Ordering::SeqCst);
    }

    /// Pushes a broadcast's copy (its WebSocket `frames`, encoded once) straight into the
    /// connection's outbox, skipping the owner's step: only while the lane is open, no
    /// command waits, and the outbox takes it within its budget. `false` otherwise: the
    /// copy then goes through the mailbox, and the session's queue, bounds and overflow
    /// policy.
    pub(crate) fn express(
        &self,
        frames: &[WsMessage],
        counts: &mut crate::driver::metrics::WsCounts,
    ) -> bool {
        // No lock: the owner closes the lane before it takes a command, so read in this
        // order a command taken since the last look shows the lane closed. The machine's
        // task, the one that calls this, pushes commands only from here or while it runs
        // something cast to it; a handle pushes one straight in only while nothing cast
        // waits or runs (`Ctl::send_owned`), so a push this read misses is concurrent with
        // the copy, and either order is right.
        if self.flags.waiting.load(Ordering::SeqCst) != 0
            || !self.flags.lane_open.load(Ordering::SeqCst)
            || self.flags.shut.load(Ordering::SeqCst)
        {
            return false;
        }
        let Some(lane) = self.lane.get() else {
            return false;
        };
        let conn = lane.conn;
        let messages = frames.iter().map(|message| Output::Send {
            conn,
            message: message.clone(),
        });
        let len = frames.iter().map(WsMessage::len).sum();
        if !lane.outbox.push_express(messages, len) {
            return false;
        }
        let flags = &self.flags;
        flags
            .packets
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
        flags.bytes.fetch_add(len as u64, Ordering::Relaxed);
        for frame in frames {
            counts.sent_len(frame.len());
        }
        true
    }
}

thread_local! {
    /// The session whose step runs on this thread (its mailbox's address, 0: none), and
    /// whether the step has sent the machine's task work that may reach that session.
    static STEP: Cell<(usize, bool)> = const { Cell::new((0, false)) };
    /// The commands a step sends its own session (a handler it runs inline answering its
    /// client): kept here, with no lock and no wake, for the step to apply before it ends.
    /// The buffer stays with the thread, not with an idle session.
    static OWN: RefCell<VecDeque<Command>> = const { RefCell::new(VecDeque::new()) };
}

/// The next command the running step sent its own session.
pub(crate) fn pop_own() -> Option<Command> {
    OWN.with(|q| q.borrow_mut().pop_front())
}

fn address(mailbox: &Mailbox) -> usize {
    std::ptr::from_ref(mailbox) as usize
}

/// A session's step on this thread, from [`Step::begin`] until dropped.
pub(crate) struct Step((usize, bool));

impl Step {
    /// The step of the session of `mailbox` starts on this thread.
    pub(crate) fn begin(mailbox: &Mailbox) -> Step {
        Step(STEP.with(|s| s.replace((address(mailbox), false))))
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        STEP.with(|s| s.set(self.0));
    }
}

impl Ctl {
    /// Sends `command` to the session `route` leads to.
    ///
    /// From the session's own step, while that step has sent the machine's task nothing,
    /// the command stays on the thread. From anywhere else it goes straight into the
    /// session's mailbox while nothing cast to the machine's task waits or runs
    /// ([`Handle::is_idle`](crate::driver::Handle)): whatever the caller cast before has
    /// then been applied, a broadcast's copies included. Otherwise it goes through the
    /// machine's task, which hands it on after what was sent there before (a broadcast, then
    /// an emit to one of its recipients, arrive in that order either way). A session whose
    /// task has ended, or whose mailbox is full, leaves its commands to the machine, which
    /// answers them as for any unknown socket, or applies the overflow policy.
    pub(crate) fn send(
        &self,
        route: &Route,
        command: Command,
    ) -> Result<(), crate::driver::Stopped> {
        match route {
            Route::Owned(mailbox) => self.send_owned(mailbox, command),
            Route::Machine => self.command(command),
        }
    }

    /// [`send`](Self::send) for a session run on the task of `mailbox`.
    pub(crate) fn send_owned(
        &self,
        mailbox: &Arc<Mailbox>,
        command: Command,
    ) -> Result<(), crate::driver::Stopped> {
        if STEP.with(Cell::get) == (address(mailbox), false) {
            OWN.with(|q| q.borrow_mut().push_back(command));
            return Ok(());
        }
        let command = match self.handle.is_idle() {
            true => match mailbox.push(command) {
                Ok(()) => return Ok(()),
                Err(Refused::Gone(command) | Refused::Full(command)) => command,
            },
            false => command,
        };
        self.command(command)
    }

    /// Runs `f` on the machine's task, after what was cast there before. A session's step
    /// that does so sends its own commands that way too from then on, to keep their order.
    pub(crate) fn cast(
        &self,
        f: impl FnOnce(&mut Node, Instant) + Send + 'static,
    ) -> Result<(), crate::driver::Stopped> {
        STEP.with(|s| {
            let (mailbox, _) = s.get();
            if mailbox != 0 {
                s.set((mailbox, true));
            }
        });
        self.handle.cast(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::metrics::WsCounts;
    use crate::driver::outbox::{BUDGET, Outbox};

    fn frames(len: usize) -> Vec<WsMessage> {
        vec![
            WsMessage::Text(Utf8Bytes::from(format!("42{}", "x".repeat(len - 2)))),
            WsMessage::Binary(bytes::Bytes::from_static(b"att")),
        ]
    }

    fn taken(outbox: &Outbox) -> Vec<Output> {
        let mut into = VecDeque::new();
        outbox.try_take(&mut into);
        into.into_iter().collect()
    }

    #[test]
    fn an_express_copy_goes_straight_out_only_while_the_lane_is_open_and_nothing_waits() {
        let mailbox = Mailbox::default();
        let outbox = Arc::new(Outbox::default());
        let mut counts = WsCounts::default();
        let copy = frames(10);
        assert!(!mailbox.express(&copy, &mut counts), "no connection yet");
        mailbox.attach(outbox.clone(), ConnId(7));
        assert!(!mailbox.express(&copy, &mut counts), "a lane starts closed");

        mailbox.set_lane(true);
        assert!(mailbox.express(&copy, &mut counts));
        let out = taken(&outbox);
        assert_eq!(out.len(), 2, "the packet, then its attachment");
        for (output, frame) in out.iter().zip(&copy) {
            match output {
                Output::Send { conn, message } => {
                    assert_eq!(*conn, ConnId(7));
                    assert_eq!(message, frame);
                }
                other => panic!("expected a frame, got {other:?}"),
            }
        }
        let traffic = mailbox.traffic();
        assert_eq!((traffic.packets_sent, traffic.bytes_sent), (2, 13));

        // A command waiting for the owner keeps later copies behind it.
        mailbox
            .push(Command::Shutdown)
            .unwrap_or_else(|_| panic!("open"));
        assert!(!mailbox.express(&copy, &mut counts));
        assert!(mailbox.pop().is_some());
        assert!(mailbox.express(&copy, &mut counts));

        // A step closes the lane until its outputs are out.
        mailbox.set_lane(false);
        assert!(!mailbox.express(&copy, &mut counts));
        mailbox.set_lane(true);

        // Past the outbox's budget the copy goes through the session's queue instead.
        outbox.written(usize::MAX);
        let big = frames(BUDGET - 3);
        assert!(mailbox.express(&big, &mut counts), "exactly the budget");
        assert!(!mailbox.express(&copy, &mut counts), "over the budget");
        taken(&outbox);
        outbox.written(BUDGET);
        assert!(mailbox.express(&copy, &mut counts));

        // An ended session's lane is gone.
        let _ = mailbox.close();
        assert!(!mailbox.express(&copy, &mut counts));
        mailbox.attach(outbox.clone(), ConnId(7));
        mailbox.set_lane(true);
        assert!(
            !mailbox.express(&copy, &mut counts),
            "not reopened after the end"
        );
    }

    /// An emit of one string argument of `len` characters (`["…"]`: `len` + 4 bytes).
    fn emit(len: usize) -> Command {
        Command::Emit {
            socket: SocketId::new("s1").unwrap(),
            nsp: Arc::from("/"),
            event: "e".to_owned(),
            payload: Payload::of(&"x".repeat(len)).unwrap(),
            volatile: false,
            compress: true,
            reply: None,
        }
    }

    fn pushed(mailbox: &Mailbox, command: Command) -> &'static str {
        match mailbox.push(command) {
            Ok(()) => "queued",
            Err(Refused::Full(_)) => "full",
            Err(Refused::Gone(_)) => "gone",
        }
    }

    #[test]
    fn a_mailbox_holds_its_bound_of_packets_and_takes_control_commands_beyond_it() {
        let mailbox = Mailbox::bounded(QueueBounds {
            packets: 2,
            bytes: 1 << 20,
        });
        assert_eq!(pushed(&mailbox, emit(1)), "queued");
        assert_eq!(pushed(&mailbox, emit(1)), "queued");
        assert_eq!(pushed(&mailbox, emit(1)), "full", "two packets wait");
        assert_eq!(pushed(&mailbox, Command::Shutdown), "queued", "no packet");
        assert_eq!(pushed(&mailbox, Command::Overflowed), "queued");
        assert_eq!(
            pushed(&mailbox, Command::Overflowed),
            "queued",
            "taken, as one"
        );
        assert!(matches!(mailbox.pop(), Some(Command::Emit { .. })));
        assert_eq!(pushed(&mailbox, emit(1)), "queued", "room again");
        assert_eq!(pushed(&mailbox, emit(1)), "full");
        let mut taken = Vec::new();
        while let Some(command) = mailbox.pop() {
            taken.push(match command {
                Command::Emit { .. } => "emit",
                Command::Shutdown => "shutdown",
                Command::Overflowed => "overflowed",
                _ => "other",
            });
        }
        assert_eq!(taken, ["emit", "shutdown", "overflowed", "emit"]);
        assert_eq!(pushed(&mailbox, Command::Overflowed), "queued", "again");
        assert!(matches!(mailbox.pop(), Some(Command::Overflowed)));
        let _ = mailbox.close();
        assert_eq!(pushed(&mailbox, emit(1)), "gone");
    }

    #[test]
    fn a_mailbox_is_bounded_in_bytes_and_takes_the_packet_that_crosses_the_bound() {
        let mailbox = Mailbox::bounded(QueueBounds {
            packets: 100,
            bytes: 100,
        });
        assert_eq!(pushed(&mailbox, emit(56)), "queued", "60 bytes");
        assert_eq!(pushed(&mailbox, emit(146)), "queued", "crosses: 210");
        assert_eq!(pushed(&mailbox, emit(0)), "full", "210 >= 100");
        assert!(mailbox.pop().is_some());
        assert_eq!(pushed(&mailbox, emit(0)), "full", "150 >= 100");
        assert!(mailbox.pop().is_some());
        assert_eq!(pushed(&mailbox, emit(0)), "queued", "empty again");
    }
}
