//! The pages in a real browser: Debian's headless Chromium, driven over
//! WebDriver (chromedriver, through fantoccini), against a server each test
//! starts on a loopback port.
//!
//! What a person does, checked the way the Channels tutorial's own Selenium
//! tests check it (focus at load, keys sent to whatever has focus,
//! `#chat-log`'s `value`), plus what the tutorial's pages never did: names,
//! history, reconnecting, recovery, text that stays text, a phone-sized
//! screen. The screenshots in `docs/screenshots/` come from
//! `screenshots_of_both_pages`.
//!
//! Without `chromium` and `chromedriver` each test says so loudly and skips;
//! with `CI` set it fails instead.

mod common;

#[path = "browser/driver.rs"]
mod driver;
#[path = "browser/proxy.rs"]
mod proxy;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chat_protocol::{Client, ClientMessage, ServerEvent};
use chat_server::Config;
use driver::{Browser, BrowserOptions, Tools, Viewport};
use futures_util::FutureExt;
use serde_json::{Value, json};

use common::{TestServer, next_chat, next_event, next_text};

/// No browser test may take longer than this, whatever hangs.
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// How long a page is watched to make sure something does NOT appear.
const QUIET: Duration = Duration::from_millis(600);

/// Whether `#chat-log` is scrolled to its end.
const AT_BOTTOM: &str = "const l = document.querySelector('#chat-log');
    return l.scrollHeight - l.scrollTop - l.clientHeight < 2";

/// The WebDriver key code for Enter (and Shift, and "release modifiers").
const ENTER: &str = "\u{e007}";
const SHIFT: &str = "\u{e008}";
const CONTROL: &str = "\u{e009}";
const RELEASE_MODIFIERS: &str = "\u{e000}";

// ---------------------------------------------------------------------------
// The picker.

#[tokio::test]
async fn picker_focuses_the_input_rejects_bad_names_and_navigates() {
    browser_test("picker", |tools| async move {
        let server = TestServer::start().await;
        let browser = server.browser(&tools, BrowserOptions::default()).await;

        browser.goto("/chat/").await;
        assert_eq!(browser.active_id().await, "room-name-input", "focus at load");
        assert_loads_only_from_the_server(&browser).await;

        // A bad name: a friendly message, no navigation.
        browser.press_keys(&format!("my room!{ENTER}")).await;
        let message = browser
            .wait_for(
                "the room-name error",
                "const e = document.querySelector('#room-name-error'); return !e.hidden && e.textContent;",
            )
            .await;
        let message = message.as_str().unwrap_or_default();
        assert!(message.contains("can't contain spaces"), "{message}");
        assert!(message.contains("my-room"), "suggests a valid name: {message}");
        assert_eq!(browser.path().await, "/chat/");
        assert_eq!(
            browser.active_id().await,
            "room-name-input",
            "still ready to type"
        );
        for bad in ["..", &"x".repeat(101)] {
            browser
                .js(
                    "const i = document.querySelector('#room-name-input'); i.maxLength = 1000; i.value = arguments[0];",
                    vec![json!(bad)],
                )
                .await;
            browser.click("#room-name-submit").await;
            browser
                .wait_for(
                    "the room-name error",
                    "return !document.querySelector('#room-name-error').hidden",
                )
                .await;
            assert_eq!(browser.path().await, "/chat/", "{bad}");
        }

        // Typing clears the error; Enter goes to /chat/<room>/.
        browser
            .js(
                "document.querySelector('#room-name-input').value = '';",
                vec![],
            )
            .await;
        browser.press_keys(&format!("lobby{ENTER}")).await;
        browser
            .wait_for(
                "navigation to /chat/lobby/",
                "return location.pathname === '/chat/lobby/'",
            )
            .await;
        assert_eq!(browser.active_id().await, "chat-message-input");

        // The button works too.
        browser.goto("/chat/").await;
        browser.press_keys("side.room_2-b").await;
        browser.click("#room-name-submit").await;
        browser
            .wait_for(
                "navigation to /chat/side.room_2-b/",
                "return location.pathname === '/chat/side.room_2-b/'",
            )
            .await;

        // The active rooms, with member counts, refreshed while open.
        browser.goto("/chat/").await;
        browser
            .wait_for(
                "the empty room list",
                "return document.querySelector('#room-list').textContent.includes('No one is chatting')",
            )
            .await;
        let (_alice, _) = server.joined("busy", "alice").await;
        let (_bob, _) = server.joined("busy", "bob").await;
        let (_carol, _) = server.joined("quiet", "carol").await;
        let rows = browser
            .wait_for(
                "the refreshed room list",
                "const rows = [...document.querySelectorAll('#room-list a')].map(a => a.textContent);
                 return rows.length === 2 && rows;",
            )
            .await;
        assert_eq!(rows, json!(["#busy2 people", "#quiet1 person"]));
        browser.click("#room-list a").await;
        browser
            .wait_for(
                "navigation to the listed room",
                "return location.pathname === '/chat/busy/'",
            )
            .await;

        browser.close().await;
        server.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// Chatting.

/// The Channels tutorial's Selenium tests, step by step: enter a room by
/// typing into whatever has focus, post with Enter, read `#chat-log`'s value.
#[tokio::test]
async fn two_browsers_in_one_room_chat_both_ways_and_other_rooms_hear_nothing() {
    browser_test("two browsers", |tools| async move {
        let server = TestServer::start().await;
        let one = server.browser(&tools, BrowserOptions::default()).await;
        let two = server.browser(&tools, BrowserOptions::default()).await;

        // As in the tutorial's tests, nobody waits for the connection: a
        // message typed before it is up goes out as soon as it is.
        for browser in [&one, &two] {
            enter_room_like_the_tutorial(browser, "room_1").await;
        }

        // Enter posts, from the focused input.
        one.press_keys(&format!("hello{ENTER}")).await;
        one.wait_for_log("hello").await;
        two.wait_for_log("hello").await;

        // The button posts too.
        two.press_keys("hi there").await;
        two.click("#chat-message-submit").await;
        one.wait_for_log("hi there").await;
        two.wait_for_log("hi there").await;

        // The log's value is the tutorial's textarea: chat messages only,
        // each followed by "\n" (no join lines, no names, no times).
        assert_eq!(one.chat_log_value().await, "hello\nhi there\n");
        assert_eq!(two.chat_log_value().await, "hello\nhi there\n");

        // What the rendered log shows: names, times, own messages marked,
        // the other window's arrival as a quiet notice, both members.
        let rows = one
            .js(
                "return [...document.querySelectorAll('#chat-log .msg')].map(r => ({
                    mine: r.classList.contains('mine'),
                    user: (r.querySelector('.user') || {}).textContent,
                    time: !!r.querySelector('time'),
                    text: r.querySelector('.text').textContent }));",
                vec![],
            )
            .await;
        let name_one = one.js_string("return document.querySelector('#display-name').value").await;
        let name_two = two.js_string("return document.querySelector('#display-name').value").await;
        assert_ne!(name_one, name_two, "two browsers, two default names");
        assert_eq!(
            rows,
            json!([
                { "mine": true, "user": name_one, "time": true, "text": "hello" },
                { "mine": false, "user": name_two, "time": true, "text": "hi there" },
            ])
        );
        let members = one
            .js(
                "return [...document.querySelectorAll('#member-list .member-name')].map(e => e.textContent)",
                vec![],
            )
            .await;
        let mut expected = vec![name_one.clone(), name_two.clone()];
        expected.sort();
        let mut shown: Vec<String> = serde_json::from_value(members).expect("names");
        shown.sort();
        assert_eq!(shown, expected);
        one.wait_for(
            "the other window's join notice",
            &format!(
                "return [...document.querySelectorAll('.notice-join')].some(n => n.textContent.includes({}))",
                json!(name_two)
            ),
        )
        .await;

        // The tutorial's other test: a message in room_1 is not seen in room_2.
        enter_room_like_the_tutorial(&two, "room_2").await;
        wait_live(&two).await;
        one.press_keys(&format!("world{ENTER}")).await;
        one.wait_for_log("world").await;
        two.press_keys(&format!("elsewhere{ENTER}")).await;
        two.wait_for_log("elsewhere").await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(two.chat_log_value().await, "elsewhere\n");
        assert!(!one.chat_log_value().await.contains("elsewhere"));
        // And room_1 saw its member leave.
        one.wait_for(
            "the leave notice",
            &format!(
                "return [...document.querySelectorAll('.notice-leave')].some(n => n.textContent.includes({}))",
                json!(name_two)
            ),
        )
        .await;

        for browser in [&one, &two] {
            assert_loads_only_from_the_server(browser).await;
            browser.assert_clean_console().await;
        }
        one.close().await;
        two.close().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_browser_and_protocol_clients_chat_both_ways() {
    browser_test("browser and protocol client", |tools| async move {
        let server = TestServer::start().await;
        let (mut alice, _) = server.joined("mixed", "alice").await;
        let mut plain = server.plain("mixed").await;
        let browser = server.browser(&tools, BrowserOptions::default()).await;

        browser.goto("/chat/mixed/").await;
        assert_eq!(browser.active_id().await, "chat-message-input");
        wait_live(&browser).await;
        let me = browser
            .js_string("return document.querySelector('#display-name').value")
            .await;
        assert!(
            me.split('-').count() == 3,
            "a friendly default name, not a prompt: {me}"
        );
        assert_eq!(
            browser
                .js_string("return localStorage.getItem('chat.displayName')")
                .await,
            me
        );
        wait_join(&mut alice, &me).await;

        // Browser -> typed client and tutorial client.
        browser
            .press_keys(&format!("from the browser{ENTER}"))
            .await;
        let chat = chat_from(&mut alice, &me).await;
        assert_eq!(chat.message, "from the browser");
        assert_eq!(
            next_text(&mut plain).await,
            r#"{"message": "from the browser"}"#
        );

        // Typed client -> browser, shown under alice's name, not as mine.
        alice.say("from the terminal").await.expect("say");
        browser.wait_for_log("from the terminal").await;
        let row = browser
            .js(
                "const r = [...document.querySelectorAll('#chat-log .msg')].pop();
                 return [r.querySelector('.user').textContent, r.classList.contains('mine')];",
                vec![],
            )
            .await;
        assert_eq!(row, json!(["alice", false]));
        // Tutorial client -> browser (no name on the wire; the server stamps one).
        common::send_text(&mut plain, r#"{"message": "from a tutorial client"}"#).await;
        browser.wait_for_log("from a tutorial client").await;
        assert_eq!(next_chat(&mut alice).await.message, "from the terminal");
        assert_eq!(
            next_chat(&mut alice).await.message,
            "from a tutorial client"
        );
        assert_eq!(
            next_text(&mut plain).await,
            r#"{"message": "from the terminal"}"#
        );
        assert_eq!(
            next_text(&mut plain).await,
            r#"{"message": "from a tutorial client"}"#
        );

        // Shift+Enter is a new line in the same message; Enter sends it.
        browser
            .type_into(
                "#chat-message-input",
                &format!("line one{SHIFT}{ENTER}{RELEASE_MODIFIERS}line two{ENTER}"),
            )
            .await;
        assert_eq!(next_chat(&mut alice).await.message, "line one\nline two");
        browser.wait_for_log("line one\nline two\n").await;

        // /me is an action.
        browser.press_keys(&format!("/me waves{ENTER}")).await;
        let action = next_chat(&mut alice).await;
        assert!(action.emote && action.message == "waves", "{action:?}");

        // A new name from the name field: announced, shown, remembered, and
        // the focus goes back to the message input.
        browser
            .type_into(
                "#display-name",
                &format!("{CONTROL}a{RELEASE_MODIFIERS}dana{ENTER}"),
            )
            .await;
        assert_eq!(browser.active_id().await, "chat-message-input");
        loop {
            match next_event(&mut alice).await {
                ServerEvent::Nick(nick) => {
                    assert_eq!(
                        (nick.old.as_str(), nick.user.as_str()),
                        (me.as_str(), "dana")
                    );
                    break;
                }
                ServerEvent::Chat(chat) => panic!("unexpected chat {chat:?}"),
                _ => {}
            }
        }
        browser.press_keys(&format!("renamed{ENTER}")).await;
        assert_eq!(next_chat(&mut alice).await.user, "dana");
        // A name the rule refuses is not taken.
        browser
            .js(
                "const n = document.querySelector('#display-name');
                 n.value = 'in\\u200bvisible'; n.dispatchEvent(new Event('change'));",
                vec![],
            )
            .await;
        browser
            .wait_for(
                "the refused name to be put back",
                "return document.querySelector('#display-name').value === 'dana'
                    && document.querySelector('#chat-log .notice-error') !== null",
            )
            .await;
        // After a reload the page comes back as dana, with the history.
        browser.goto("/chat/mixed/").await;
        assert_eq!(browser.active_id().await, "chat-message-input");
        assert_eq!(
            browser
                .js_string("return document.querySelector('#display-name').value")
                .await,
            "dana"
        );
        wait_live(&browser).await;
        browser.wait_for_log("from the terminal\n").await;
        wait_join(&mut alice, "dana").await;

        browser.assert_clean_console().await;
        browser.close().await;
        server.shutdown().await;
    })
    .await;
}

/// Issue #13: a display name someone else holds in the room is refused
/// (the page learns why, since a browser cannot read the 409), a new name
/// joins at once, a rename to a taken name is refused and undone, and the
/// room's topic shows in the header.
#[tokio::test]
async fn a_taken_name_is_refused_a_new_one_joins_and_the_topic_shows() {
    browser_test("name taken", |tools| async move {
        let server = TestServer::start().await;
        let (mut alice, _) = server.joined("names", "alice").await;
        let browser = server.browser(&tools, BrowserOptions::default()).await;
        browser.goto("/chat/").await;
        browser
            .js("localStorage.setItem('chat.displayName', 'alice'); return true", vec![])
            .await;
        browser.goto("/chat/names/").await;
        browser
            .wait_for(
                "the name-taken notice",
                "return document.querySelector('#chat-log').textContent.includes('The name alice is taken')
                    && document.querySelector('#connection-status').textContent.includes('name taken')",
            )
            .await;

        // Another name: the page joins by itself.
        browser
            .js("const n = document.querySelector('#display-name'); n.focus(); n.select(); return true", vec![])
            .await;
        browser.press_keys(&format!("alicia{ENTER}")).await;
        wait_live(&browser).await;
        wait_join(&mut alice, "alicia").await;

        // The topic, set by someone else, in the header.
        alice
            .send(&ClientMessage::Topic {
                topic: "release on Friday".into(),
            })
            .await
            .expect("send");
        browser
            .wait_for(
                "the topic in the header",
                "const t = document.querySelector('#room-topic');
                 return !t.hidden && t.textContent === 'release on Friday'",
            )
            .await;

        // Renaming to alice is refused by the server; the page goes back.
        browser.press_keys(&format!("/nick alice{ENTER}")).await;
        browser
            .wait_for(
                "the rename refused and undone",
                "return document.querySelector('#chat-log').textContent.includes('is taken in this room')
                    && document.querySelector('#display-name').value === 'alicia'",
            )
            .await;

        // And /topic from the page reaches everyone.
        browser.press_keys(&format!("/topic ship it{ENTER}")).await;
        loop {
            if let ServerEvent::Topic(topic) = next_event(&mut alice).await {
                if topic.topic == "ship it" {
                    assert_eq!(topic.user, "alicia");
                    break;
                }
            }
        }

        browser.close().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn messages_and_names_are_text_never_html() {
    browser_test("xss", |tools| async move {
        const IMG: &str = "<img src=x onerror=alert(1)>";
        const SCRIPT: &str = "<script>alert(2)</script>";
        let server = TestServer::start().await;
        let (mut mallory, _) = server.joined("xss", "<i>mallory</i>").await;
        // One before the browser arrives (history), the rest live.
        mallory.say(IMG).await.expect("say");
        let browser = server.browser(&tools, BrowserOptions::default()).await;
        browser.goto("/chat/xss/").await;
        wait_live(&browser).await;
        mallory.say(IMG).await.expect("say");
        mallory.say(SCRIPT).await.expect("say");
        emote(&mut mallory, IMG).await;
        browser.wait_for_log(&format!("{IMG}\n{IMG}\n{SCRIPT}\n{IMG}\n")).await;
        // Give a broken image's onerror every chance to fire.
        tokio::time::sleep(QUIET).await;

        assert_eq!(browser.open_alert().await, None, "no alert may open");
        let texts = browser
            .js(
                "return [...document.querySelectorAll('#chat-log .msg .text')].map(t => t.textContent)",
                vec![],
            )
            .await;
        assert_eq!(
            texts,
            json!([IMG, IMG, SCRIPT, format!("<i>mallory</i> {IMG}")]),
            "shown as the characters that were sent"
        );
        let injected = browser
            .js(
                "return document.querySelectorAll('#chat-log img, #chat-log script, #chat-log i, #member-list i').length",
                vec![],
            )
            .await;
        assert_eq!(injected, json!(0), "no element was made from message text");
        // Not even an attempt that the Content-Security-Policy had to stop.
        browser.assert_clean_console().await;
        let members = browser
            .js_string("return document.querySelector('#member-list').textContent")
            .await;
        assert!(members.contains("<i>mallory</i>"), "{members}");
        assert!(
            browser
                .js_string("return document.querySelector('#chat-log').innerHTML")
                .await
                .contains("&lt;img src=x onerror=alert(1)&gt;")
        );

        browser.close().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn auto_scroll_follows_new_messages_until_the_reader_scrolls_up() {
    browser_test("auto-scroll", |tools| async move {
        let server = TestServer::start().await;
        let (mut alice, _) = server.joined("scroll", "alice").await;
        let browser = server.browser(&tools, BrowserOptions::default()).await;
        browser.goto("/chat/scroll/").await;
        wait_live(&browser).await;
        for i in 0..60 {
            alice.say(&format!("message {i}")).await.expect("say");
        }
        browser.wait_for_log("message 59\n").await;
        browser
            .wait_for("the log to follow", AT_BOTTOM)
            .await;

        // Scrolled up: new messages do not move the view, a button offers them.
        browser
            .js(
                "const log = document.querySelector('#chat-log'); log.scrollTop = 0;",
                vec![],
            )
            .await;
        browser
            .wait_for(
                "the scroll to register",
                "return document.querySelector('#chat-log').scrollTop === 0",
            )
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 60..63 {
            alice.say(&format!("message {i}")).await.expect("say");
        }
        browser.wait_for_log("message 62\n").await;
        let button = browser
            .wait_for(
                "the new-messages button",
                "const b = document.querySelector('#new-messages'); return !b.hidden && b.textContent",
            )
            .await;
        assert_eq!(button, json!("3 new messages ↓"));
        assert_eq!(
            browser.js("return document.querySelector('#chat-log').scrollTop", vec![]).await,
            json!(0),
            "the view stays where the reader put it"
        );
        browser.click("#new-messages").await;
        browser
            .wait_for("the log at the bottom", AT_BOTTOM)
            .await;
        assert_eq!(browser.active_id().await, "chat-message-input");

        // One's own message always scrolls into view.
        browser
            .js("document.querySelector('#chat-log').scrollTop = 0;", vec![])
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        browser.press_keys(&format!("mine{ENTER}")).await;
        browser.wait_for_log("mine\n").await;
        browser
            .wait_for("the log at the bottom", AT_BOTTOM)
            .await;

        browser.close().await;
        server.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// Connection trouble.

#[tokio::test]
async fn the_page_reconnects_after_a_server_restart() {
    browser_test("restart", |tools| async move {
        let mut server = TestServer::start().await;
        let browser = server.browser(&tools, BrowserOptions::default()).await;
        browser.goto("/chat/restart/").await;
        wait_live(&browser).await;
        let (mut alice, _) = server.joined("restart", "alice").await;
        alice.say("before the restart").await.expect("say");
        browser.wait_for_log("before the restart\n").await;

        server.restart().await;
        browser
            .wait_for(
                "the page to show the outage",
                "const s = document.querySelector('#connection-status');
                 return s.classList.contains('reconnecting') || s.classList.contains('connecting')",
            )
            .await;
        wait_live(&browser).await;

        // Receives again, sends again; what was shown before stays.
        let (mut bob, welcome) = server.joined("restart", "bob").await;
        assert!(
            welcome.members.len() == 2,
            "the page is back in the room: {welcome:?}"
        );
        bob.say("after the restart").await.expect("say");
        browser.wait_for_log("after the restart\n").await;
        browser.press_keys(&format!("still here{ENTER}")).await;
        assert_eq!(chat_not_from(&mut bob, "bob").await.message, "still here");
        browser.wait_for_log("still here\n").await;
        assert_eq!(
            browser.chat_log_value().await,
            "before the restart\nafter the restart\nstill here\n"
        );
        browser
            .wait_for(
                "the reconnect notice",
                "return document.querySelector('#chat-log').textContent.includes('Reconnected')",
            )
            .await;

        browser.close().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_page_recovers_messages_missed_while_its_connection_was_down() {
    browser_test("recovery", |tools| async move {
        let server = TestServer::start().await;
        let proxy = proxy::Proxy::start(server.addr()).await;
        let mut browser = server.browser(&tools, BrowserOptions::default()).await;
        browser.set_base(&format!("http://{}", proxy.addr()));
        browser.goto("/chat/recover/").await;
        wait_live(&browser).await;
        let (mut alice, _) = server.joined("recover", "alice").await;
        alice.say("one").await.expect("say");
        browser.wait_for_log("one\n").await;

        // The network goes away (no close frame), and stays away a while.
        proxy.cut();
        browser
            .wait_for(
                "the page to notice",
                "return document.querySelector('#connection-status').classList.contains('reconnecting')",
            )
            .await;
        alice.say("two").await.expect("say");
        alice.say("three").await.expect("say");
        // A message typed while offline waits and goes out on reconnect.
        browser.press_keys(&format!("typed offline{ENTER}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.resume();

        wait_live(&browser).await;
        browser.wait_for_log("typed offline\n").await;
        assert_eq!(
            browser.chat_log_value().await,
            "one\ntwo\nthree\ntyped offline\n",
            "missed messages recovered in order, nothing twice"
        );
        assert_eq!(chat_not_from(&mut alice, "alice").await.message, "typed offline");
        browser
            .wait_for(
                "the recovery notice",
                "return document.querySelector('#chat-log').textContent.includes('2 messages arrived while you were away')",
            )
            .await;

        browser.close().await;
        server.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// Closing.

/// Opens a socket from the page and does `action` once it is open; the
/// close lands in `window.__closed`: its code, whether it was clean, and
/// the milliseconds from the action to `onclose`.
const CLOSE_PROBE: &str = "const [url, action, arg] = arguments;
    window.__closed = null;
    const ws = new WebSocket(url);
    let acted = 0;
    ws.onopen = () => {
        if (action === 'binary') ws.send(new Uint8Array([1, 2]));
        else if (action === 'big') ws.send('x'.repeat(arg));
        else if (action === 'text') for (const text of arg) ws.send(text);
        acted = performance.now();
        window.__opened = true;
    };
    ws.onclose = (e) => {
        window.__closed = { code: e.code, clean: e.wasClean, ms: performance.now() - acted };
    };
    return true;";

/// Chromium reports a close (`onclose`) only once the TCP connection is
/// gone, or after 2 s of waiting for it: every close the server starts
/// must reach the page at once.
#[tokio::test]
async fn the_page_sees_every_close_the_server_starts_at_once() {
    browser_test("closing", |tools| async move {
        let cases = [
            ("binary frame", "", "binary", json!(0), 1003),
            (
                "plain frame not JSON",
                "",
                "text",
                json!(["not json"]),
                1007,
            ),
            ("too big", "", "big", json!(2000), 1009),
            (
                "typed flood",
                "?v=2",
                "text",
                json!([
                    r#"{"message": "a"}"#,
                    r#"{"message": "b"}"#,
                    r#"{"message": "c"}"#
                ]),
                1008,
            ),
            ("shutdown", "", "wait", json!(0), 1001),
        ];
        for (case, query, action, arg, code) in cases {
            let server = TestServer::start_with(Config {
                max_message_size: 1024,
                drain_window: Duration::ZERO,
                limits: chat_server::Limits {
                    rate_per_sec: 1.0,
                    rate_burst: 1,
                    ..chat_server::Limits::default()
                },
                ..Config::default()
            })
            .await;
            let browser = server.browser(&tools, BrowserOptions::default()).await;
            browser.goto("/chat/").await;
            let url = format!("ws://{}/ws/chat/close/{query}", server.addr());
            browser
                .js(CLOSE_PROBE, vec![json!(url), json!(action), arg])
                .await;
            browser
                .wait_for("the socket to open", "return window.__opened")
                .await;
            let stopped_at = std::time::Instant::now();
            let server = if action == "wait" {
                server.shutdown().await;
                None
            } else {
                Some(server)
            };
            let closed = browser
                .wait_for("the close", "return window.__closed")
                .await;
            let ms = if action == "wait" {
                // From the shutdown, as the page cannot see when it began.
                stopped_at.elapsed().as_secs_f64() * 1000.0
            } else {
                closed["ms"].as_f64().unwrap_or(f64::MAX)
            };
            eprintln!("chromium, {case}: {closed}, {ms:.0} ms");
            assert_eq!(closed["code"], code, "{case}: {closed}");
            assert_eq!(closed["clean"], true, "{case}: {closed}");
            assert!(
                ms < 1000.0,
                "{case}: onclose came {ms:.0} ms after the action"
            );
            browser.close().await;
            if let Some(server) = server {
                server.shutdown().await;
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Tokens.

/// Waits, across navigations, until the page at `path` shows a live
/// connection; returns its address.
async fn wait_live_at(browser: &Browser, path: &str) -> String {
    let deadline = tokio::time::Instant::now() + common::WITHIN;
    let script = "const s = document.querySelector('#connection-status');
        return s && s.classList.contains('live') && location.href";
    loop {
        if let Some(Value::String(href)) = browser.try_js(script, vec![]).await {
            if href.contains(path) {
                return href;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never went live: {}",
            browser.describe().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pages read `?token=` and take it out of the address bar (and so out
/// of the history and of anything copied from it); a reload still works.
#[tokio::test]
async fn the_token_leaves_the_address_bar_and_a_reload_still_works() {
    browser_test("token", |tools| async move {
        let server = TestServer::start_with(Config {
            access: chat_server::Access {
                tokens: vec!["s3cret-token".into()],
                ..chat_server::Access::new()
            },
            ..Config::default()
        })
        .await;
        let browser = server.browser(&tools, BrowserOptions::default()).await;
        browser.goto("/chat/lobby/?token=s3cret-token").await;
        let href = wait_live_at(&browser, "/chat/lobby/").await;
        assert!(!href.contains("token"), "{href}");
        browser.js("location.reload(); return true", vec![]).await;
        let href = wait_live_at(&browser, "/chat/lobby/").await;
        assert!(!href.contains("token"), "after a reload: {href}");
        browser.goto("/chat/?token=s3cret-token").await;
        browser
            .wait_for(
                "the room list, fetched with the token",
                "return document.querySelector('#room-list').textContent.includes('No one is chatting')",
            )
            .await;
        let href = browser.js_string("return location.href").await;
        assert!(!href.contains("token"), "the picker: {href}");
        browser.close().await;
        server.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// DNS rebinding.

/// A page of `rebound.example`, whose name now resolves to the server (as
/// DNS rebinding makes it), gets neither the room page nor the room list:
/// its requests still say `Host: rebound.example`.
#[tokio::test]
async fn a_rebound_name_gets_no_page_and_no_room_list() {
    browser_test("rebinding", |tools| async move {
        let server = TestServer::start().await;
        let (_alice, _) = server.joined("private", "alice").await;
        let rebound = format!("http://rebound.example:{}", server.addr().port());
        let options = BrowserOptions {
            host_resolver_rules: Some("MAP rebound.example 127.0.0.1"),
            ..BrowserOptions::default()
        };
        let browser = Browser::open(&tools, &rebound, options).await;
        browser.goto("/chat/private/").await;
        let text = browser.js_string("return document.body.innerText").await;
        assert!(
            text.contains("does not answer to rebound.example"),
            "the page: {text}"
        );
        let rooms = browser
            .js(
                "return fetch('/api/rooms').then(async r => [r.status, await r.text()])",
                vec![],
            )
            .await;
        assert_eq!(rooms[0], 400, "{rooms}");
        assert!(
            !rooms[1].as_str().unwrap_or("").contains("private"),
            "{rooms}"
        );
        browser.close().await;
        server.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// A phone.

#[tokio::test]
async fn a_phone_sized_screen_shows_the_input_without_horizontal_scrolling() {
    browser_test("phone", |tools| async move {
        let server = TestServer::start().await;
        let phone = server
            .browser(
                &tools,
                BrowserOptions {
                    viewport: Viewport::Phone,
                    ..BrowserOptions::default()
                },
            )
            .await;

        phone.goto("/chat/").await;
        assert_eq!(phone.active_id().await, "room-name-input");
        assert_fits(&phone, "#room-name-input").await;
        assert_fits(&phone, "#room-name-submit").await;

        let (mut alice, _) = server
            .joined("phone", "alice-with-a-rather-long-name-x")
            .await;
        let long_word = "Supercalifragilisticexpialidocious".repeat(8);
        alice.say(&long_word).await.expect("say");
        alice
            .say("a URL: http://127.0.0.1:8000/chat/a-very-long-room-name-that-goes-on-and-on/?and=a&long=query")
            .await
            .expect("say");
        phone.goto("/chat/phone/").await;
        assert_eq!(phone.active_id().await, "chat-message-input");
        wait_live(&phone).await;
        phone.wait_for_log(&long_word).await;
        phone.press_keys(&format!("{}{ENTER}", "x".repeat(200))).await;
        assert_eq!(chat_not_from(&mut alice, "alice-with-a-rather-long-name-x").await.message, "x".repeat(200));
        phone.wait_for_log(&"x".repeat(200)).await;

        assert_eq!(phone.js("return window.innerWidth", vec![]).await, json!(390));
        for selector in ["#chat-message-input", "#chat-message-submit", "#display-name", "#connection-status"] {
            assert_fits(&phone, selector).await;
        }
        let overflowing = phone
            .js(
                "return [...document.querySelectorAll('#chat-log .msg, #chat-log .text')]
                    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5).length",
                vec![],
            )
            .await;
        assert_eq!(overflowing, json!(0), "long words wrap");
        let log_scrolls_sideways = phone
            .js(
                "const l = document.querySelector('#chat-log'); return l.scrollWidth > l.clientWidth",
                vec![],
            )
            .await;
        assert_eq!(log_scrolls_sideways, json!(false));

        // The member list opens as a drawer and closes again.
        phone.click("#members-toggle").await;
        phone
            .wait_for(
                "the member drawer",
                "return getComputedStyle(document.querySelector('#members')).display !== 'none'
                    && document.querySelector('#member-list').textContent.includes('alice-with')",
            )
            .await;
        assert_fits(&phone, "#members").await;
        phone.click("#members-toggle").await;

        phone.assert_clean_console().await;
        phone.close().await;
        server.shutdown().await;
    })
    .await;
}

/// Asserts that everything the page loaded came from the server itself.
async fn assert_loads_only_from_the_server(browser: &Browser) {
    let outside = browser
        .js(
            "return performance.getEntriesByType('resource')
                .map(e => e.name)
                .filter(url => !url.startsWith(location.origin + '/'))",
            vec![],
        )
        .await;
    assert_eq!(outside, json!([]), "loaded from outside the server");
    let loaded = browser
        .js(
            "return performance.getEntriesByType('resource').length",
            vec![],
        )
        .await;
    assert!(
        loaded.as_u64() > Some(0),
        "the page loads its assets: {loaded}"
    );
}

/// Asserts that `selector` is inside the viewport and that the page does not
/// scroll sideways.
async fn assert_fits(browser: &Browser, selector: &str) {
    let verdict = browser
        .js(
            "const e = document.querySelector(arguments[0]);
             const r = e.getBoundingClientRect();
             const doc = document.documentElement;
             return {
               visible: r.width > 0 && r.height > 0,
               inside: r.left >= -0.5 && r.top >= -0.5
                 && r.right <= window.innerWidth + 0.5 && r.bottom <= window.innerHeight + 0.5,
               scrollsSideways: doc.scrollWidth > window.innerWidth || document.body.scrollWidth > window.innerWidth,
               rect: [r.left, r.top, r.right, r.bottom], viewport: [window.innerWidth, window.innerHeight],
             };",
            vec![json!(selector)],
        )
        .await;
    assert_eq!(verdict["visible"], json!(true), "{selector}: {verdict}");
    assert_eq!(verdict["inside"], json!(true), "{selector}: {verdict}");
    assert_eq!(
        verdict["scrollsSideways"],
        json!(false),
        "{selector}: {verdict}"
    );
}

// ---------------------------------------------------------------------------
// Screenshots for the README.

#[tokio::test]
async fn screenshots_of_both_pages() {
    browser_test("screenshots", |tools| async move {
        let dir = screenshot_dir();
        let server = TestServer::start().await;

        // Some rooms for the picker, and a conversation to arrive into.
        let (mut alice, _) = server.joined("lobby", "alice").await;
        let (mut bob, _) = server.joined("lobby", "bob").await;
        let (mut carol, _) = server.joined("lobby", "carol").await;
        let _rust = [
            server.joined("rust", "ferris").await.0,
            server.joined("rust", "alice").await.0,
        ];
        let _random = server.joined("random", "erin").await.0;
        // Each line is heard back before the next is said, so that the
        // conversation keeps its order across the three connections.
        say_in_order(&mut alice, "alice", "Morning all! Is the deploy still on for today?").await;
        say_in_order(&mut bob, "bob", "Yes, at 14:00. I'll post in here when it starts.").await;
        say_in_order(&mut bob, "bob", "The migration takes about ten minutes; the site stays up.").await;
        emote(&mut carol, "brings coffee for everyone").await;
        chat_from(&mut carol, "carol").await;
        say_in_order(&mut alice, "alice", "Perfect, thanks!").await;

        let desktop = server.browser(&tools, BrowserOptions::default()).await;
        desktop.goto("/chat/").await;
        desktop
            .wait_for(
                "the room list",
                "return document.querySelectorAll('#room-list a').length === 3",
            )
            .await;
        desktop.press_keys("team-").await;
        desktop.screenshot(&dir.join("picker-desktop.png")).await;

        desktop
            .js("localStorage.setItem('chat.displayName', 'dana')", vec![])
            .await;
        desktop.goto("/chat/lobby/").await;
        wait_live(&desktop).await;
        drain(&mut alice).await;
        bob.say("Welcome, dana!").await.expect("say");
        desktop.wait_for_log("Welcome, dana!").await;
        desktop
            .press_keys(&format!(
                "Hi everyone! Thanks for the heads-up.{ENTER}"
            ))
            .await;
        desktop.wait_for_log("heads-up").await;
        desktop
            .type_into(
                "#chat-message-input",
                &format!("Shift+Enter starts a new line,{SHIFT}{ENTER}{RELEASE_MODIFIERS}and Enter sends.{ENTER}"),
            )
            .await;
        desktop.wait_for_log("and Enter sends.").await;
        {
            let (erin, _) = server.joined("lobby", "erin").await;
            desktop.wait_for("erin's arrival", "return document.querySelector('.notice-join') !== null").await;
            erin.close().await.ok();
        }
        desktop.wait_for("erin leaving", "return document.querySelector('.notice-leave') !== null").await;
        carol
            .say("Long words wrap: https://127.0.0.1/this/is/a/deliberately/long/link/without/any/spaces/in/it")
            .await
            .expect("say");
        desktop.wait_for_log("deliberately").await;
        desktop.press_keys("Sounds good").await;
        desktop.screenshot(&dir.join("room-desktop.png")).await;

        let dark = server
            .browser(&tools, BrowserOptions { dark: true, ..BrowserOptions::default() })
            .await;
        dark.goto("/chat/").await;
        dark.js("localStorage.setItem('chat.displayName', 'frank')", vec![]).await;
        dark.goto("/chat/lobby/").await;
        wait_live(&dark).await;
        dark.wait_for_log("deliberately").await;
        dark.screenshot(&dir.join("room-desktop-dark.png")).await;
        dark.close().await;

        let phone = server
            .browser(&tools, BrowserOptions { viewport: Viewport::Phone, ..BrowserOptions::default() })
            .await;
        phone.goto("/chat/").await;
        phone
            .wait_for(
                "the room list",
                "return document.querySelectorAll('#room-list a').length === 3",
            )
            .await;
        // The phone shot shows the friendly refusal of a bad name.
        phone.press_keys(&format!("team chat{ENTER}")).await;
        phone
            .wait_for(
                "the room-name error",
                "return !document.querySelector('#room-name-error').hidden",
            )
            .await;
        phone.screenshot(&dir.join("picker-phone.png")).await;
        phone.js("localStorage.setItem('chat.displayName', 'gus')", vec![]).await;
        phone.goto("/chat/lobby/").await;
        wait_live(&phone).await;
        phone.wait_for_log("deliberately").await;
        alice.say("Phones get the same page, members in a drawer.").await.expect("say");
        phone.wait_for_log("members in a drawer").await;
        phone.screenshot(&dir.join("room-phone.png")).await;
        phone.close().await;

        desktop.close().await;
        eprintln!("screenshots written to {}", dir.display());
        server.shutdown().await;
    })
    .await;
}

/// `$CHAT_SCREENSHOT_DIR`, or `docs/screenshots` at the workspace root.
fn screenshot_dir() -> PathBuf {
    std::env::var_os("CHAT_SCREENSHOT_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots"),
        PathBuf::from,
    )
}

/// The next chat message from `user`, skipping everything else.
async fn chat_from(client: &mut Client, user: &str) -> chat_protocol::ChatEvent {
    loop {
        let chat = next_chat(client).await;
        if chat.user == user {
            return chat;
        }
    }
}

/// The next chat message not from `me` (a client hears its own messages).
async fn chat_not_from(client: &mut Client, me: &str) -> chat_protocol::ChatEvent {
    loop {
        let chat = next_chat(client).await;
        if chat.user != me {
            return chat;
        }
    }
}

/// Waits for `user`'s join event.
async fn wait_join(client: &mut Client, user: &str) {
    loop {
        match next_event(client).await {
            ServerEvent::Join(join) if join.user == user => return,
            ServerEvent::Chat(chat) => panic!("unexpected chat while waiting for {user}: {chat:?}"),
            _ => {}
        }
    }
}

/// Says `text` as `me` and waits until the server has relayed it back.
async fn say_in_order(client: &mut Client, me: &str, text: &str) {
    client.say(text).await.expect("say");
    assert_eq!(chat_from(client, me).await.message, text);
}

/// Sends an action ("/me ...").
async fn emote(client: &mut Client, text: &str) {
    client
        .send(&ClientMessage::Emote {
            message: text.to_owned(),
        })
        .await
        .expect("emote");
}

/// Reads whatever `client` has been sent so far.
async fn drain(client: &mut Client) {
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), client.next()).await {}
}

// ---------------------------------------------------------------------------
// Helpers.

/// Runs one browser test: skips (loudly) without Chromium, bounds its time,
/// and makes sure a failure still ends with every browser closed (their
/// `Drop` does that while chromedriver is still running).
async fn browser_test<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Tools) -> Fut,
    Fut: Future<Output = ()>,
{
    common::init_tracing();
    let Some(tools) = Tools::find(name) else {
        return;
    };
    // A panic or a timeout drops the test's future, and with it every
    // browser it opened (see `Browser`'s `Drop`), before the test fails.
    let outcome = tokio::time::timeout(
        TEST_LIMIT,
        std::panic::AssertUnwindSafe(test(tools)).catch_unwind(),
    )
    .await
    .unwrap_or_else(|_| panic!("{name}: the browser test took longer than {TEST_LIMIT:?}"));
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Goes to the picker and enters `room` the way the tutorial's Selenium
/// tests do: keys to the focused element, then Enter.
async fn enter_room_like_the_tutorial(browser: &Browser, room: &str) {
    browser.goto("/chat/").await;
    assert_eq!(browser.active_id().await, "room-name-input");
    browser.press_keys(&format!("{room}{ENTER}")).await;
    browser
        .wait_for(
            "the room page",
            &format!(
                "return location.pathname === {}",
                json!(format!("/chat/{room}/"))
            ),
        )
        .await;
    assert_eq!(
        browser.active_id().await,
        "chat-message-input",
        "focus on the message input at load"
    );
}

/// Waits until the page shows a live connection.
async fn wait_live(browser: &Browser) {
    browser
        .wait_for(
            "a live connection",
            "const s = document.querySelector('#connection-status');
             return s.classList.contains('live') && s.textContent.includes('live')",
        )
        .await;
}

/// What the browser tests need of a server besides what
/// `common::TestServer` gives every test.
trait Pages {
    /// `http://<addr>`, where the pages are.
    fn base(&self) -> String;

    /// A browser on this server's pages.
    async fn browser(&self, tools: &Tools, options: BrowserOptions) -> Browser;
}

impl Pages for TestServer {
    fn base(&self) -> String {
        format!("http://{}", self.addr())
    }

    async fn browser(&self, tools: &Tools, options: BrowserOptions) -> Browser {
        Browser::open(tools, &self.base(), options).await
    }
}
