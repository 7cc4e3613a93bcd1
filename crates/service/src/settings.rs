//! Settings: one clap `Args` struct per service, every flag with its own help, an
//! `ARQONBUS_*` variable, and a default that is a named constant used in
//! `default_value_t`. [`defaults`] reads those same defaults back, so a service's
//! `Default` never writes one again and cannot drift from its flags.

use clap::{Args, Command, FromArgMatches};

/// The settings `T`'s flags give when none is set and no variable either: the value
/// each flag's `default_value` names (and `Default::default()` for `#[arg(skip)]`
/// fields). The environment is not read, so a test's defaults are the same everywhere.
///
/// # Panics
///
/// When a flag of `T` is required or has a default its own parser refuses: a bug of
/// `T`'s declaration, which every crate's tests of its `Default` catch.
pub fn defaults<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(Command::new("defaults")).mut_args(|arg| arg.env(None));
    let matches = command
        .try_get_matches_from(["defaults"])
        .expect("every setting has a default its parser accepts");
    T::from_arg_matches(&matches).expect("the defaults build the settings")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u32 = 7;

    #[derive(Debug, PartialEq, clap::Args)]
    struct Sample {
        /// A limit.
        #[arg(long, env = "ARQON_SERVICE_TEST_LIMIT", default_value_t = LIMIT)]
        limit: u32,
        /// A name.
        #[arg(long, env = "PATH")]
        name: Option<String>,
        #[arg(skip)]
        injected: Option<u8>,
    }

    #[test]
    fn defaults_are_the_flags_and_ignore_the_environment() {
        // `PATH` is set wherever tests run: read, it would be the name.
        assert!(std::env::var_os("PATH").is_some());
        let defaults: Sample = defaults();
        assert_eq!(
            defaults,
            Sample {
                limit: LIMIT,
                name: None,
                injected: None
            }
        );
    }
}
