//! Placeholder: being written.

use arqon_protocol::CommandReply;

use super::super::Call;
use super::super::catalog::Spec;
use crate::operators_control::OperatorsControl;

pub(super) const SPECS: &[Spec] = &[];

pub(super) async fn execute(
    _call: &Call<'_>,
    name: &str,
    _control: &OperatorsControl,
) -> CommandReply {
    CommandReply::error(
        arqon_protocol::ErrorCode::UnknownCommand,
        format!("Unknown command: {name}"),
    )
}
