// Misuses of the clients generated from the Node example (examples/node-backend): tsc must refuse exactly
// lines 6 to 9 (the test asserts where and why): a wrong title type, a field no Todo has; TS, then JS.
import * as ts from "./generated/todo_node";
import * as js from "./generated/todo_node_js.js";

export const wrongTitleTs = () => ts.add({ title: 42 });
export const noSuchFieldTs = async () => (await ts.add({ title: "milk" })).due;
export const wrongTitleJs = () => js.add({ title: 42 });
export const noSuchFieldJs = async () => (await js.add({ title: "milk" })).due;
