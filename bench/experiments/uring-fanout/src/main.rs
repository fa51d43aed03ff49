//! uring-fanout: does submitting a room's socket writes to the kernel in one
//! `io_uring` call cut the CPU a delivery costs, against one `send(2)` per
//! member, as chat-server's write pass does? (Issue #16, point 2: "`io_uring`
//! ... to submit many sockets' writes in one system call", a candidate to
//! measure, not to assume.)
//!
//! The load is chat-bench's paced 100 × 10, reduced to its writes: a sender
//! holds `--sockets` loopback connections in rooms of `--room`, and every
//! millisecond it writes `--rate / 1000` messages, each a `--frame`-byte
//! frame to every member of one room (the rooms in turn). A sink process
//! reads everything and counts the bytes. Nothing else runs in the sender,
//! so its CPU time per delivered frame is the cost of the write path alone,
//! which is where the two ways differ:
//!
//! * `send`: one non-blocking `send(2)` per member (chat-server today);
//! * `uring-room`: one `Send` entry per member, one `io_uring_enter` per
//!   message (a room's write pass in one system call);
//! * `uring-tick`: every entry of the millisecond in one `io_uring_enter`
//!   (the most a server could batch at this rate).
//!
//! On loopback the kernel runs the receiver's TCP input inside the sender's
//! send, so that cost is in every mode's figure, as it is in a server's.
//! CPU is read two ways: the sending thread's own run time
//! (`/proc/thread-self/schedstat`, in ns), and the whole process's user +
//! system time (in 10 ms ticks; it would include `io_uring`'s worker
//! threads, had any been used). A CPU's busy time from `/proc/stat` was
//! tried and dropped: in this container its `cpu0` is not the CPU that
//! `taskset -c 0` names (it read 0 % or 100 % busy from run to run).
//!
//! Usage: `uring-fanout sink --connections N` (prints `port P`, then
//! `received BYTES` once every connection has closed), and
//! `uring-fanout send --port P --mode send|uring-room|uring-tick [--sockets
//! 1000] [--room 10] [--rate 10000] [--seconds 10] [--frame 100]`.

use std::io::{ErrorKind, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, types};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("sink") => sink(&Options::parse(&args[1..])),
        Some("send") => send(&Options::parse(&args[1..])),
        _ => Err(
            "usage: uring-fanout sink --connections N | uring-fanout send --port P \
             --mode send|uring-room|uring-tick [--sockets N] [--room N] [--rate MSG/S] \
             [--seconds S] [--frame BYTES]"
                .to_owned(),
        ),
    };
    if let Err(err) = result {
        eprintln!("uring-fanout: {err}");
        std::process::exit(2);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Send,
    UringRoom,
    UringTick,
}

struct Options {
    connections: usize,
    port: u16,
    mode: Mode,
    sockets: usize,
    room: usize,
    rate: usize,
    seconds: u64,
    frame: usize,
}

impl Options {
    fn parse(args: &[String]) -> Self {
        let mut options = Self {
            connections: 1000,
            port: 0,
            mode: Mode::Send,
            sockets: 1000,
            room: 10,
            rate: 10_000,
            seconds: 10,
            frame: 100,
        };
        let mut args = args.iter();
        while let (Some(flag), Some(value)) = (args.next(), args.next()) {
            let number = || {
                value
                    .parse::<usize>()
                    .unwrap_or_else(|_| panic!("{flag} wants a number, not {value:?}"))
            };
            match flag.as_str() {
                "--connections" => options.connections = number(),
                "--port" => options.port = u16::try_from(number()).expect("--port: 1-65535"),
                "--sockets" => options.sockets = number(),
                "--room" => options.room = number(),
                "--rate" => options.rate = number(),
                "--seconds" => options.seconds = number() as u64,
                "--frame" => options.frame = number(),
                "--mode" => {
                    options.mode = match value.as_str() {
                        "send" => Mode::Send,
                        "uring-room" => Mode::UringRoom,
                        "uring-tick" => Mode::UringTick,
                        other => panic!("--mode: send, uring-room or uring-tick, not {other:?}"),
                    }
                }
                other => panic!("unknown option {other}"),
            }
        }
        options
    }
}

/// Accepts `--connections` connections, reads them all to their end, and
/// prints how many bytes came.
fn sink(options: &Options) -> Result<(), String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    println!("port {port}");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let total = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        let mut readers = Vec::with_capacity(options.connections);
        for _ in 0..options.connections {
            let (mut stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            readers.push(tokio::spawn(async move {
                let mut sink = tokio::io::sink();
                tokio::io::copy(&mut stream, &mut sink).await.unwrap_or(0)
            }));
        }
        let mut total = 0;
        for reader in readers {
            total += reader.await.map_err(|e| e.to_string())?;
        }
        Ok::<u64, String>(total)
    })?;
    println!("received {total}");
    Ok(())
}

/// What one sending run did and cost.
#[derive(Default)]
struct Tally {
    messages: u64,
    /// Frames the kernel took whole.
    sent: u64,
    /// Frames refused or cut short (the socket's buffer full): a server
    /// would queue them; here they only count.
    failed: u64,
    /// System calls that carried writes (`send` or `io_uring_enter`).
    calls: u64,
}

fn send(options: &Options) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, options.port));
    let sockets = (0..options.sockets)
        .map(|_| {
            let socket = TcpStream::connect(addr)?;
            socket.set_nodelay(true)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let rooms: Vec<&[TcpStream]> = sockets.chunks(options.room.max(1)).collect();
    // A WebSocket text frame, server to client: header, then the payload.
    let mut frame = vec![b'x'; options.frame.max(2)];
    frame[0] = 0x81;
    frame[1] = u8::try_from(options.frame.saturating_sub(2).min(125)).unwrap_or(125);
    let frame: &'static [u8] = Box::leak(frame.into_boxed_slice());

    let mut ring = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .build(4096)
        .map_err(|e| format!("io_uring_setup: {e}"))?;
    let per_tick = (options.rate / 1000).max(1);
    let ticks = options.seconds * 1000;

    let before = Cpu::now();
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut next_room = 0;
    for tick in 0..ticks {
        let due = started + Duration::from_millis(tick);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for _ in 0..per_tick {
            let room = rooms[next_room];
            next_room = (next_room + 1) % rooms.len();
            tally.messages += 1;
            match options.mode {
                Mode::Send => {
                    for member in room {
                        tally.calls += 1;
                        match (&*member).write(frame) {
                            Ok(n) if n == frame.len() => tally.sent += 1,
                            Ok(_) => tally.failed += 1,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => tally.failed += 1,
                            Err(e) => return Err(format!("send: {e}")),
                        }
                    }
                }
                Mode::UringRoom | Mode::UringTick => {
                    for member in room {
                        let entry = opcode::Send::new(
                            types::Fd(member.as_raw_fd()),
                            frame.as_ptr(),
                            u32::try_from(frame.len()).unwrap_or(u32::MAX),
                        )
                        .build();
                        // SAFETY: the buffer is `'static` (leaked above) and
                        // every socket outlives the ring's use of it: all
                        // entries complete (`reap`) before `sockets` drops.
                        while unsafe { ring.submission().push(&entry) }.is_err() {
                            submit(&mut ring, &mut tally, frame.len())?;
                        }
                    }
                    if options.mode == Mode::UringRoom {
                        submit(&mut ring, &mut tally, frame.len())?;
                    }
                }
            }
        }
        if options.mode == Mode::UringTick {
            submit(&mut ring, &mut tally, frame.len())?;
        }
    }
    let elapsed = started.elapsed();
    let after = Cpu::now();
    drop(sockets);

    let deliveries = (tally.sent + tally.failed).max(1) as f64;
    let per = |ns: u64| ns as f64 / deliveries;
    println!(
        "mode={mode:?} seconds={secs:.2} messages={m} sent={s} failed={f} calls={c} \
         thread_ns_per={t:.0} process_ns_per={p:.0} sent_bytes={b}",
        mode = options.mode,
        secs = elapsed.as_secs_f64(),
        m = tally.messages,
        s = tally.sent,
        f = tally.failed,
        c = tally.calls,
        t = per(after.thread_ns - before.thread_ns),
        p = per(after.process_ns - before.process_ns),
        b = tally.sent * frame.len() as u64,
    );
    Ok(())
}

/// Hands the queued entries to the kernel in one call, then counts every
/// completion (with non-blocking sockets, a send that cannot go at once
/// completes with `EAGAIN`, so nothing stays in flight).
fn submit(ring: &mut IoUring, tally: &mut Tally, len: usize) -> Result<(), String> {
    let queued = ring.submission().len();
    if queued == 0 {
        return Ok(());
    }
    tally.calls += 1;
    ring.submit_and_wait(queued)
        .map_err(|e| format!("io_uring_enter: {e}"))?;
    for completion in ring.completion() {
        match usize::try_from(completion.result()) {
            Ok(n) if n == len => tally.sent += 1,
            _ => tally.failed += 1,
        }
    }
    Ok(())
}

/// CPU time read from `/proc`, in nanoseconds.
struct Cpu {
    thread_ns: u64,
    process_ns: u64,
}

impl Cpu {
    fn now() -> Self {
        // Clock ticks of 10 ms (USER_HZ is 100 on Linux).
        const TICK_NS: u64 = 10_000_000;
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let numbers = |text: &str| -> Vec<u64> {
            text.split_whitespace()
                .map(|field| field.parse().unwrap_or(0))
                .collect()
        };
        let thread_ns = numbers(&read("/proc/thread-self/schedstat"))
            .first()
            .copied()
            .unwrap_or(0);
        let stat = read("/proc/self/stat");
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields = numbers(after_name);
        // utime and stime are the 14th and 15th fields: 12th and 13th after
        // the name (state is the first there, and not a number).
        let process_ns = (fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0)) * TICK_NS;
        Self {
            thread_ns,
            process_ns,
        }
    }
}
