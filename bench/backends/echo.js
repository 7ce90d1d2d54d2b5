'use strict';
// The Node SDK contestant: `echo` replies with the request's `data`.
//
//   node bench/backends/echo.js 127.0.0.1:PORT
//
// BENCH_NODE_SDK names another build of the package (a directory), to compare two builds.

const { Backend } = require(process.env.BENCH_NODE_SDK || '../../sdk-node');

const backend = new Backend();
backend.method('echo', (data) => data);
backend.listen(process.argv[2] || '127.0.0.1:21244').catch((error) => {
  console.error(error);
  process.exit(1);
});
