// `OrchestrixBuilder::sends` declares an aggregate command that the
// application will send (ADR 0043): a type that no aggregate handles is a
// compile error at the call, not a failed build or a failed first command.
use orchestrix::Orchestrix;

pub struct NotACommand;

fn main() {
    let _ = Orchestrix::builder().in_memory().sends::<NotACommand>("the import job").build();
}
