// A nested worker that only answers (valid as a classic and as a module worker).
self.onmessage = () => self.postMessage('hi');
