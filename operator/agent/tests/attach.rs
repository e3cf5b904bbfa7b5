//! Attach and terminal resize against real busybox containers through the shim: output fanned out to several
//! clients while the log goes on, stdin forwarded, detach leaving the container running, and TIOCSWINSZ for
//! TTY containers and TTY exec sessions.

mod support;

use berth_agent::runtime::tty::Size;
use berth_agent::runtime::{Error, Status};
use support::{Cleanup, Collector, DEADLINE, container, runtime, write_fd};

#[tokio::test]
async fn two_clients_see_the_output_and_share_stdin_and_detaching_leaves_it_running() {
    let (rt, _root) = runtime();
    let mut config = container(
        "attach",
        "echo ready; while read line; do echo \"out $line\"; echo \"err $line\" >&2; \
         [ \"$line\" = bye ] && exit 4; done",
    );
    config.stdin = true;
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();

    let mut first = rt.attach(&id, true).await.unwrap();
    let mut second = rt.attach(&id, false).await.unwrap();
    assert!(!first.tty && second.stdin.is_none());
    let (out1, err1) = (
        Collector::new(first.stdout.take().unwrap()),
        Collector::new(first.stderr.take().unwrap()),
    );
    let (out2, err2) = (
        Collector::new(second.stdout.take().unwrap()),
        Collector::new(second.stderr.take().unwrap()),
    );
    let stdin = first.stdin.take().unwrap();
    write_fd(&stdin, b"one\n");
    out1.wait_for("out one\n").await;
    err1.wait_for("err one\n").await;
    out2.wait_for("out one\n").await;
    err2.wait_for("err one\n").await;
    assert!(!out1.text().contains("err"), "stderr leaked into stdout");

    // The first client detaches: the container runs on, and the other client still gets its output.
    drop((first, stdin));
    let mut third = rt.attach(&id, true).await.unwrap();
    let stdin = third.stdin.take().unwrap();
    let out3 = Collector::new(third.stdout.take().unwrap());
    write_fd(&stdin, b"two\n");
    out2.wait_for("out two\n").await;
    out3.wait_for("out two\n").await;
    assert!(!out3.text().contains("one"), "an attach replays nothing");
    assert_eq!(rt.state(&id).await.unwrap().status, Status::Running);
    let log = std::fs::read_to_string(&handle.log_path).unwrap();
    assert!(
        log.contains(" stdout F out one\n") && log.contains(" stderr F err one\n"),
        "{log}"
    );

    write_fd(&stdin, b"bye\n");
    let exit = tokio::time::timeout(DEADLINE, second.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, 4);
    out3.wait_for("out bye\n").await;
    support::eventually("the output pipes to close", || out3.ended().then_some(())).await;
    let exit = tokio::time::timeout(DEADLINE, third.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, 4);
    assert!(matches!(
        rt.attach(&id, false).await,
        Err(Error::NotRunning(_))
    ));
}

#[tokio::test]
async fn a_container_without_stdin_gives_an_attach_no_input() {
    let (rt, _root) = runtime();
    let config = container("nostdin", "echo ready; exec sleep 1000");
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    rt.create(config).await.unwrap();
    let attached = rt.attach(&id, true).await.unwrap();
    assert!(attached.stdin.is_none());
    assert!(attached.terminal.is_none() && !attached.tty);
}

#[tokio::test]
async fn a_tty_container_is_attached_to_its_terminal_and_resized() {
    let (rt, _root) = runtime();
    let mut config = container(
        "ttyattach",
        "while read line; do echo \"size $(stty size) $line\"; [ \"$line\" = bye ] && exit 0; done",
    );
    config.tty = true;
    config.stdin = true;
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    rt.create(config).await.unwrap();
    let mut attached = rt.attach(&id, true).await.unwrap();
    assert!(attached.tty && attached.stderr.is_none());
    let out = Collector::new(attached.stdout.take().unwrap());
    let stdin = attached.stdin.take().unwrap();
    attached
        .terminal
        .as_ref()
        .unwrap()
        .resize(Size {
            width: 123,
            height: 45,
        })
        .unwrap();
    write_fd(&stdin, b"a\r");
    out.wait_for("size 45 123 a").await;
    attached
        .terminal
        .as_ref()
        .unwrap()
        .resize(Size {
            width: 90,
            height: 20,
        })
        .unwrap();
    write_fd(&stdin, b"bye\r");
    out.wait_for("size 20 90 bye").await;
    let exit = tokio::time::timeout(DEADLINE, attached.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, 0);
}

#[tokio::test]
async fn a_tty_exec_session_is_resized() {
    let (rt, _root) = runtime();
    let config = container("ttyexec", "exec sleep 1000");
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    rt.create(config).await.unwrap();
    let mut process = rt
        .exec(
            &id,
            vec![
                "sh".into(),
                "-c".into(),
                "read line; echo \"size $(stty size)\"".into(),
            ],
            true,
        )
        .await
        .unwrap();
    let out = Collector::new(process.stdout.take().unwrap());
    let stdin = process.stdin.take().unwrap();
    process
        .terminal
        .as_ref()
        .unwrap()
        .resize(Size {
            width: 101,
            height: 33,
        })
        .unwrap();
    write_fd(&stdin, b"go\r");
    out.wait_for("size 33 101").await;
    let exit = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, 0);

    let plain = rt.exec(&id, vec!["true".into()], false).await.unwrap();
    assert!(plain.terminal.is_none());
}
