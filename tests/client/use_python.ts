// Right uses of the clients generated from the Python example (examples/python-backend: typed
// `def add(data: AddTodo) -> Todo`): must compile under --strict, the JS client's JSDoc types as well.
import * as ts from "./generated/todo_python";
import * as js from "./generated/todo_python_js.js";

async function uses(client: typeof ts): Promise<number> {
  const todo = await client.add({ title: "milk" });
  const id: number = todo.id;
  const title: string = todo.title;
  // A dataclass result writes every field, so `done` is a `boolean`, not `boolean | undefined`.
  const finished: boolean = todo.done;
  const marked: boolean = (await client.done({ id })).done;
  const count: number = (await client.count()).count;
  const titles: string[] = (await client.list()).todos.map((each) => each.title);
  try {
    await client.done({ id: 0 });
  } catch (error) {
    if (error instanceof client.MethodError) return error.code.length;
  }
  return id + title.length + Number(finished || marked) + count + titles.length;
}

export const both = () => Promise.all([uses(ts), uses(js)]);
