FROM busybox:latest
RUN wget -q -T 60 -O /c http://127.0.0.1:40751/ && cat /c
