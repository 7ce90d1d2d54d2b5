// A wrong argument type: tsc must refuse this file (the test asserts it does, and why).
import { add } from "./generated/todo";

export async function misuse(): Promise<number> {
  return await add({ a: "one", b: 2 });
}
