-- An avatar is stored at each size the pages show, made once at upload, under
-- content-addressed keys: avatar_key is the largest (avatars/<profile>/<digest>/512.<ext>) and
-- avatar_sizes lists every stored side ("96 192 512"), each under the same folder as
-- <side>.<ext>. Avatars from before have one size, and none listed.
ALTER TABLE profiles ADD COLUMN avatar_sizes TEXT;
