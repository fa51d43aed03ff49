//! `chat-tui`: a terminal client for the chat room protocol.
//!
//! The interactive client is built the Elm way, so that everything a user
//! can do is testable without a terminal or a network:
//!
//! * [`app`]: the state ([`app::App`], plain data) and the one pure step
//!   [`app::App::update`], which turns a [`msg::Msg`] into new state and a
//!   list of [`msg::Effect`]s. No I/O, no clock.
//! * [`ui`]: [`ui::view`] draws an `&App` into a ratatui frame. It only
//!   reads state; every piece of remote text goes through [`sanitize`].
//! * [`geometry`]: where the panes go and how many rows a message takes,
//!   from the state and the terminal size; what `app` and `ui` both need.
//! * [`net`]: one task per joined room owns that room's connection
//!   (the protocol crate's client): connect, forward events, reconnect with
//!   backoff and jitter, resume with `since`.
//! * [`runtime`]: the only loop. It `select!`s over terminal input, network
//!   events and signals, feeds `update`, runs the effects, and draws once
//!   after draining what is queued.
//! * [`terminal`]: raw mode, alternate screen, mouse and bracketed paste on;
//!   and the restore that runs on quit, on a signal and in the panic hook.
//! * [`pipe`]: the non-interactive modes, `--pipe` and `--once`.
//! * [`config`]: the command line ([`config::Cli`]) and the validated
//!   [`config::Config`], with the exit codes.
//! * [`sanitize`] and [`wrap`]: making remote text harmless, and wrapping it
//!   by display width (CJK, emoji).
//! * [`clock`] and [`theme`]: the time format and day names, the colours.

pub mod app;
pub mod clock;
pub mod config;
pub mod geometry;
pub mod msg;
pub mod net;
pub mod pipe;
pub mod runtime;
pub mod sanitize;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod wrap;
