// Cold-start baseline: a Node process that only prints (the floor every runtime starts from).
console.log("ready");
