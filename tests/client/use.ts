// Right uses of the generated client: must compile under --strict.
import { add, tag, any, MethodError, type TagItem } from "./generated/todo";

export async function uses(): Promise<number> {
  const sum: number = await add({ a: 1, b: 2 });
  const item: TagItem = { id: 1, color: "green", labels: ["x"] };
  const tagged: "tagged" | boolean = await tag({ item, note: null });
  await tag({ item: { id: 2, color: "red" } });
  const anything: unknown = await any([1, "two", null]);
  await any(); // `data` that admits null may be left out
  try {
    await add({ a: 3, b: 4 });
  } catch (error) {
    if (error instanceof MethodError) return error.code.length + error.status;
  }
  return sum + (tagged === true ? 1 : 0) + (anything === null ? 1 : 0);
}
