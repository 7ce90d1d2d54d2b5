// The JavaScript client's JSDoc types, seen from TypeScript: the same right uses compile.
import { add, tag } from "./generated/todo_js.js";

export async function usesJs(): Promise<number> {
  await tag({ item: { id: 1, color: "blue" } });
  return await add({ a: 1, b: 2 });
}
