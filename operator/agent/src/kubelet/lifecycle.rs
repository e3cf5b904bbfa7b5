//! Container lifecycle hooks (`postStart`, `preStop`) as upstream's kubelet runs them: an exec in the
//! container, an httpGet from inside the Pod's network namespace (the probes' HTTP client), or a sleep. This
//! module runs one handler within a time limit; the Pod worker decides when, and what a failure means.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, LifecycleHandler, ObjectReference};

use super::probe::{Outcome, ProbeTarget, Prober};

/// Which hook a handler is, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hook {
    PostStart,
    PreStop,
}

impl Hook {
    /// The Event reason of a failure, as upstream's.
    pub(super) fn failed_reason(self) -> &'static str {
        match self {
            Self::PostStart => "FailedPostStartHook",
            Self::PreStop => "FailedPreStopHook",
        }
    }
}

/// Everything a hook of one container needs, owned so it can go to a task of its own.
#[derive(Debug, Clone)]
pub(super) struct HookRun {
    pub hook: Hook,
    pub handler: LifecycleHandler,
    pub container: String,
    /// `namespace/name` of the Pod, for messages.
    pub pod: String,
    pub ports: Vec<ContainerPort>,
    pub target: ProbeTarget,
    /// The container, for the failure Event.
    pub reference: ObjectReference,
}

impl HookRun {
    /// Runs the handler, cut off at `limit`; the error is the message of the failure Event.
    pub(super) async fn run(&self, prober: &Prober, limit: Duration) -> Result<(), String> {
        let action = match Action::of(&self.handler) {
            Ok(action) => action,
            Err(message) => return Err(self.failure("", &message)),
        };
        match action {
            Action::Exec(command) => {
                let shown = format!("[{}]", command.join(" "));
                match prober.exec(&self.target.container_id, command, limit).await {
                    Outcome::Failure(message) => Err(self.failure(&shown, &message)),
                    Outcome::Success | Outcome::Warning(_) => Ok(()),
                }
            }
            Action::HttpGet => {
                // Invariant: `Action::of` returned HttpGet because the handler has one.
                let Some(get) = &self.handler.http_get else {
                    return Ok(());
                };
                let path = get.path.clone().unwrap_or_default();
                match prober.http_get(get, &self.ports, &self.target, limit).await {
                    Outcome::Failure(message) => Err(self.failure(&path, &message)),
                    Outcome::Success | Outcome::Warning(_) => Ok(()),
                }
            }
            Action::Sleep(duration) => {
                tokio::time::sleep(duration.min(limit)).await;
                Ok(())
            }
        }
    }

    /// Upstream's wording: `Exec lifecycle hook ([cmd]) for Container "c" in Pod "ns/p" failed - error: …`.
    fn failure(&self, what: &str, message: &str) -> String {
        let kind = match Action::of(&self.handler) {
            Ok(Action::Exec(_)) => "Exec",
            Ok(Action::HttpGet) => "HTTP",
            Ok(Action::Sleep(_)) => "Sleep",
            Err(_) => "Unknown",
        };
        format!(
            "{kind} lifecycle hook ({what}) for Container {:?} in Pod {:?} failed - error: {message}",
            self.container, self.pod
        )
    }
}

/// The one action of a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Exec(Vec<String>),
    HttpGet,
    Sleep(Duration),
}

impl Action {
    fn of(handler: &LifecycleHandler) -> Result<Action, String> {
        if let Some(exec) = &handler.exec {
            let command = exec.command.clone().unwrap_or_default();
            if command.is_empty() {
                return Err("the exec handler has no command".into());
            }
            Ok(Action::Exec(command))
        } else if handler.http_get.is_some() {
            Ok(Action::HttpGet)
        } else if let Some(sleep) = &handler.sleep {
            let seconds = u64::try_from(sleep.seconds)
                .map_err(|_| format!("invalid sleep duration {}", sleep.seconds))?;
            Ok(Action::Sleep(Duration::from_secs(seconds)))
        } else {
            Err("the handler names no action (exec, httpGet or sleep)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, SleepAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::runtime::{Runtime, RuntimeConfig};

    fn prober(root: &std::path::Path) -> Prober {
        let mut config = RuntimeConfig::new(root).unwrap();
        config.shim_program = PathBuf::from("/nonexistent/berth-shim");
        Prober::new(Runtime::new(config).unwrap())
    }

    fn run_of(handler: LifecycleHandler) -> HookRun {
        HookRun {
            hook: Hook::PreStop,
            handler,
            container: "app".into(),
            pod: "default/web".into(),
            ports: Vec::new(),
            target: ProbeTarget {
                container_id: "no-such-container".into(),
                netns: None,
                pod_ip: None,
                started_at: jiff::Timestamp::now(),
            },
            reference: ObjectReference::default(),
        }
    }

    /// Answers one request with `status` on 127.0.0.1 and returns the port.
    async fn answer_once(status: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let reply =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(reply.as_bytes()).await;
        });
        port
    }

    fn http_handler(port: u16) -> LifecycleHandler {
        LifecycleHandler {
            http_get: Some(HTTPGetAction {
                path: Some("/hook".into()),
                port: IntOrString::Int(i32::from(port)),
                ..HTTPGetAction::default()
            }),
            ..LifecycleHandler::default()
        }
    }

    #[test]
    fn a_handler_has_exactly_the_action_it_names() {
        let exec = LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["sh".into(), "-c".into(), "true".into()]),
            }),
            ..LifecycleHandler::default()
        };
        assert_eq!(
            Action::of(&exec),
            Ok(Action::Exec(vec!["sh".into(), "-c".into(), "true".into()]))
        );
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 3 }),
            ..LifecycleHandler::default()
        };
        assert_eq!(
            Action::of(&sleep),
            Ok(Action::Sleep(Duration::from_secs(3)))
        );
        assert!(Action::of(&LifecycleHandler::default()).is_err());
        let empty_exec = LifecycleHandler {
            exec: Some(ExecAction { command: None }),
            ..LifecycleHandler::default()
        };
        assert!(Action::of(&empty_exec).is_err());
        let negative = LifecycleHandler {
            sleep: Some(SleepAction { seconds: -1 }),
            ..LifecycleHandler::default()
        };
        assert!(Action::of(&negative).is_err());
    }

    #[tokio::test]
    async fn a_sleep_hook_ends_at_the_limit() {
        let root = tempfile::tempdir().unwrap();
        let run = run_of(LifecycleHandler {
            sleep: Some(SleepAction { seconds: 600 }),
            ..LifecycleHandler::default()
        });
        let prober = prober(root.path());
        let began = std::time::Instant::now();
        let limit = Duration::from_millis(300);
        let ended = tokio::time::timeout(Duration::from_secs(20), run.run(&prober, limit));
        assert_eq!(ended.await, Ok(Ok(())));
        assert!(began.elapsed() >= limit);
    }

    #[tokio::test]
    async fn an_http_hook_succeeds_on_200_and_fails_on_500() {
        let root = tempfile::tempdir().unwrap();
        let prober = prober(root.path());
        let ok = run_of(http_handler(answer_once("200 OK").await));
        assert_eq!(ok.run(&prober, Duration::from_secs(10)).await, Ok(()));
        let bad = run_of(http_handler(answer_once("500 Internal Server Error").await));
        let err = bad.run(&prober, Duration::from_secs(10)).await.unwrap_err();
        assert!(
            err.starts_with(
                "HTTP lifecycle hook (/hook) for Container \"app\" in Pod \"default/web\" failed"
            ),
            "{err}"
        );
        assert!(err.contains("statuscode: 500"), "{err}");
    }

    #[tokio::test]
    async fn an_exec_hook_in_a_missing_container_fails_with_its_command() {
        let root = tempfile::tempdir().unwrap();
        let run = run_of(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["touch".into(), "/mark".into()]),
            }),
            ..LifecycleHandler::default()
        });
        let err = run
            .run(&prober(root.path()), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            err.starts_with("Exec lifecycle hook ([touch /mark])"),
            "{err}"
        );
        assert_eq!(run.hook.failed_reason(), "FailedPreStopHook");
    }
}
