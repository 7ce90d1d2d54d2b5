// A known gap, not a misuse: the Python example's Todo always has `done` (asdict writes every field),
// but sdk-python describes a dataclass field with a default as not required, results included, so the
// client types it `done?: boolean`, and line 7 fails. It compiles once results require such fields.
import { add } from "./generated/todo_python";

export async function finished(): Promise<boolean> {
  return (await add({ title: "milk" })).done;
}
