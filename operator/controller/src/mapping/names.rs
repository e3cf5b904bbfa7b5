//! The names of the objects a Stack owns, derived from the Stack's name so that reconciling twice finds the
//! same objects (no generated names).

use berth_api::Stack;

use super::MappingError;

/// Service names are DNS-1035 labels (63 characters); the longest suffix is `-redis`.
const LONGEST_SUFFIX: &str = "-redis";
const LABEL_MAX: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub stack: String,
    /// The database Pod and its Service (`<stack>-db`): the host name in `DATABASE_URL`.
    pub database: String,
    /// The Redis Pod and its Service (`<stack>-redis`): the host name in `REDIS_URL`.
    pub redis: String,
    /// The app Service (`<stack>-app`) and the prefix of app Pods.
    pub app: String,
    pub secret: String,
    pub database_claim: String,
    pub redis_claim: String,
}

impl Names {
    pub fn of(stack: &Stack) -> Result<Names, MappingError> {
        let name = stack.metadata.name.clone().ok_or(MappingError::Unnamed)?;
        if stack.metadata.namespace.is_none() {
            return Err(MappingError::Unnamed);
        }
        let max = LABEL_MAX - LONGEST_SUFFIX.len();
        if name.len() > max {
            return Err(MappingError::NameTooLong { name, max });
        }
        Ok(Names {
            database: format!("{name}-db"),
            redis: format!("{name}-redis"),
            app: format!("{name}-app"),
            secret: format!("{name}-db-credentials"),
            database_claim: format!("{name}-db-data"),
            redis_claim: format!("{name}-redis-data"),
            stack: name,
        })
    }

    /// The migration Pod of one app template: a new template migrates again.
    pub fn migrate(&self, hash: &str) -> String {
        format!("{}-migrate-{hash}", self.stack)
    }

    /// App Pod `index` of one template.
    pub fn app_pod(&self, hash: &str, index: i32) -> String {
        format!("{}-{hash}-{index}", self.app)
    }
}
