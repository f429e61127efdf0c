// A small Socket.IO v5 client over WebSocket (Engine.IO v4), enough for the chat page when
// the official client bundle is not installed: io(url, {auth}), on, emit (with an ack
// callback as last argument), disconnect. It reconnects after a dropped connection.
(function () {
  "use strict";
  function io(url, opts) {
    opts = opts || {};
    var handlers = {};
    var acks = {};
    var nextAck = 0;
    var ws = null;
    var closedByUser = false;
    var queue = [];
    var socket = { connected: false, id: null };

    function fire(name, args) {
      (handlers[name] || []).forEach(function (h) { h.apply(null, args); });
    }
    function send(text) {
      if (ws && ws.readyState === 1) ws.send(text); else queue.push(text);
    }
    function open() {
      var base = url || (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
      base = base.replace(/^http/, "ws");
      ws = new WebSocket(base + "/socket.io/?EIO=4&transport=websocket");
      ws.onmessage = function (ev) {
        var data = ev.data;
        if (typeof data !== "string") return;
        var type = data.charAt(0);
        if (type === "0") {
          ws.send("40" + JSON.stringify(opts.auth || {}));
        } else if (type === "2") {
          ws.send("3");
        } else if (type === "4") {
          onPacket(data.slice(1));
        }
      };
      ws.onclose = function () {
        var was = socket.connected;
        socket.connected = false;
        if (was) fire("disconnect", ["transport close"]);
        if (!closedByUser) setTimeout(open, 1000);
      };
    }
    function onPacket(p) {
      var type = p.charAt(0);
      var rest = p.slice(1);
      var m = /^(\d*)(.*)$/.exec(rest);
      var id = m[1] === "" ? null : parseInt(m[1], 10);
      var body = m[2] ? JSON.parse(m[2]) : undefined;
      if (type === "0") {
        socket.connected = true;
        socket.id = body && body.sid;
        var pending = queue; queue = [];
        pending.forEach(send);
        fire("connect", []);
      } else if (type === "4") {
        fire("connect_error", [body]);
      } else if (type === "1") {
        socket.connected = false;
        closedByUser = true;
        fire("disconnect", ["io server disconnect"]);
      } else if (type === "2") {
        var args = body.slice(1);
        if (id !== null) {
          args.push(function () {
            send("3" + id + JSON.stringify(Array.prototype.slice.call(arguments)));
          });
        }
        fire(body[0], args);
      } else if (type === "3") {
        var cb = acks[id];
        delete acks[id];
        if (cb) cb.apply(null, body);
      }
    }
    socket.on = function (name, h) { (handlers[name] = handlers[name] || []).push(h); return socket; };
    socket.emit = function () {
      var args = Array.prototype.slice.call(arguments);
      var id = "";
      if (typeof args[args.length - 1] === "function") {
        id = String(nextAck++);
        acks[id] = args.pop();
      }
      send("2" + id + JSON.stringify(args));
      return socket;
    };
    socket.disconnect = function () {
      closedByUser = true;
      send("41");
      if (ws) ws.close();
      return socket;
    };
    open();
    return socket;
  }
  window.io = io;
})();
